//! Seed 004 as its customers live it, through the gateway only: sign up, sign in, save a card,
//! order, and read the outcome in an email. Stripe is localstripe and the mail server aiosmtpd,
//! both real servers from PyPI. Afterwards the card numbers used are searched for everywhere
//! kassa could have put them: every row of every service's database, every event published, the
//! emails, and everything the run logged at its most talkative level. None may be found.

use crate::support;

use std::{
    io::Write,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use async_trait::async_trait;
use kassa::registry;
use kassa_contracts::Envelope;
use kassa_platform::{
    bus::{Handler, HandlerError, Subscription},
    db::Db,
    testing::{every_row, mentions},
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{
    Backend, TestApp, eventually, post_with,
    servers::{LocalStripe, SmtpServer, free_port},
    spawn_app_with, unique,
};

/// The services these scenarios exercise, and those they call or hear from.
const SERVICES: &[&str] = &["gateway", "users", "orders", "payments", "notifications"];

/// Approved by Stripe.
const APPROVED: &str = "4242424242424242";
/// Saved by Stripe, its charges declined.
const DECLINED: &str = "4000000000000341";
/// Refused by Stripe when attached to a customer: never saved.
const REFUSED: &str = "4000000000000002";

on_both_backends!(a_customer_pays_with_a_saved_card_and_is_emailed_once);

/// Everything every test of this binary logged, at debug level (trace for kassa's own crates).
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let filter = tracing_subscriber::EnvFilter::new(
            "debug,kassa=trace,kassa_platform=trace,kassa_users=trace,kassa_orders=trace,\
             kassa_payments=trace,kassa_gateway=trace,kassa_notifications=trace",
        );
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(move || LogLine(sink.clone()))
            .init();
        logs
    })
}

struct LogLine(Arc<Mutex<Vec<u8>>>);

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every event published on the bus, as it travelled.
#[derive(Default)]
struct Tap(Mutex<Vec<String>>);

#[async_trait]
impl Handler for Tap {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError> {
        let text = serde_json::to_string(event).map_err(HandlerError::new)?;
        self.0.lock().unwrap().push(text);
        Ok(())
    }
}

impl Tap {
    async fn on(app: &mut TestApp) -> Arc<Tap> {
        let tap = Arc::new(Tap::default());
        // The embedded bus would keep a dead letter there; the tap refuses nothing.
        let path = std::env::temp_dir().join(format!("{}-tap.db", app.namespace));
        let retry = app.settings.retry;
        let leftovers = app.leftovers().consumer("tap").retry(retry);
        for suffix in ["", "-wal", "-shm"] {
            leftovers.file(format!("{}{suffix}", path.display()).into());
        }
        let db = Db::connect(&kassa_platform::db::DbLocation::Sqlite { path })
            .await
            .unwrap();
        app.bus()
            .subscribe(Subscription {
                consumer: "tap".into(),
                topics: vec!["#".into()],
                handler: tap.clone(),
                db,
            })
            .await
            .unwrap();
        tap
    }

    fn events(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// Every row of every database of `app`'s services.
async fn every_row_of(app: &TestApp) -> Vec<String> {
    let mut rows = Vec::new();
    for service in registry::with_storage() {
        let db = Db::connect(&app.settings.database(service).unwrap())
            .await
            .unwrap();
        rows.extend(every_row(&db).await);
        db.close().await;
    }
    rows
}

async fn a_customer_pays_with_a_saved_card_and_is_emailed_once(backend: Backend) {
    let logs = logs();
    let stripe = LocalStripe::start();
    let port = free_port();
    let smtp = SmtpServer::start(port, &std::env::temp_dir().join(unique("maildir-")));
    let mut app = spawn_app_with(backend, SERVICES, |s| {
        s.options.set("provider", "stripe");
        s.options.set("stripe-secret-key", "sk_test_kassa");
        s.options.set("stripe-api-base", stripe.url.as_str());
        s.options
            .set("smtp-url", format!("smtp://127.0.0.1:{port}"));
        s.options.set("mail-from", "FoodFast <orders@example.com>");
    })
    .await;
    let tap = Tap::on(&mut app).await;

    // Signed up and in, the 4242 card saved: the order is paid through Stripe.
    let (paying, paying_email) = app.customer_with_card_as(APPROVED).await;
    let (paid, status) = app.order_settles(&paying).await;
    assert_eq!(status, "success");
    let payment = app.payment_of(&paid, &["APPROVED"]).await;
    let intent = payment["providerReference"].as_str().unwrap_or_default();
    assert!(intent.starts_with("pi_"), "{payment}");
    let receipts = eventually(
        "the receipt arrives",
        Duration::from_secs(20),
        async || smtp.to(&paying_email),
        |m| !m.is_empty(),
    )
    .await;
    let receipt = &receipts[0];
    assert!(
        receipt.contains("Subject: Payment Successful - Thank You!"),
        "{receipt}"
    );
    for fact in [paid.as_str(), "12.50 USD", "Margherita", intent] {
        assert!(receipt.contains(fact), "{fact} missing from {receipt}");
    }

    // A card Stripe declines: the order fails and the email says so.
    let (declined, declined_email) = app.customer_with_card_as(DECLINED).await;
    let (failed, status) = app.order_settles(&declined).await;
    assert_eq!(status, "failed");
    let failures = eventually(
        "the failure email arrives",
        Duration::from_secs(20),
        async || smtp.to(&declined_email),
        |m| !m.is_empty(),
    )
    .await;
    let failure = &failures[0];
    assert!(
        failure.contains("Subject: Payment Failed - Action Required"),
        "{failure}"
    );
    assert!(failure.contains(failed.as_str()), "{failure}");

    // A card Stripe refuses is not saved; one whose expiry has passed is not even sent there.
    for (number, expiry) in [(REFUSED, "12/34"), (APPROVED, "01/20")] {
        let refused = post_with(
            &app.client,
            &format!("{}/api/payment-methods/add", app.gateway),
            &[("authorization", &format!("Bearer {declined}"))],
            json!({"card_number": number, "expiry_date": expiry, "cardholder_name": "A Customer"}),
        )
        .await;
        assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body: Value = refused.json().await.unwrap();
        assert!(
            !mentions(&body.to_string(), number),
            "the error repeats the number: {body}"
        );
    }

    // One email each, whatever redeliveries happened.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        (smtp.to(&paying_email).len(), smtp.to(&declined_email).len()),
        (1, 1)
    );

    // The numbers are nowhere: not stored, not published, not emailed, not logged.
    let rows = every_row_of(&app).await;
    assert!(
        rows.iter()
            .any(|r| r.contains("4242") && r.contains("visa")),
        "the saved card's brand and last 4 are among the rows read"
    );
    let events = tap.events();
    assert!(
        events.iter().any(|e| e.contains("payment.receipt")),
        "the tap saw the events: {events:?}"
    );
    let mails = smtp.received();
    let logged = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(
        logged.contains("/api/payment-methods/add"),
        "the run was logged"
    );
    for number in [APPROVED, DECLINED, REFUSED] {
        for (place, texts) in [
            ("a table", &rows),
            ("an event", &events),
            ("an email", &mails),
        ] {
            if let Some(text) = texts.iter().find(|t| mentions(t, number)) {
                panic!("{number} is in {place}: {text}");
            }
        }
        assert!(!mentions(&logged, number), "{number} was logged");
    }

    app.stop().await;
}
