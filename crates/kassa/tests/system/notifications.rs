//! Seed 004's emails against a real SMTP server (aiosmtpd from PyPI, started here on a port of
//! its own, keeping what it receives in a Maildir): one email per payment outcome, with the
//! subject, amount, order, item and payment id; and a mail server that is down delays the email,
//! dead-letters it after the last attempt, and a redrive sends it, once.

use crate::support;

use std::time::Duration;

use support::{
    Backend, TestApp, eventually,
    servers::{SmtpServer, free_port},
    spawn_app_with, unique,
};

/// The services these scenarios exercise, and those they call or hear from.
const SERVICES: &[&str] = &["gateway", "users", "orders", "payments", "notifications"];

async fn with_smtp(backend: Backend, port: u16) -> TestApp {
    spawn_app_with(backend, SERVICES, |s| {
        s.options
            .set("smtp-url", format!("smtp://127.0.0.1:{port}"));
        s.options.set("mail-from", "FoodFast <orders@example.com>");
    })
    .await
}

on_both_backends!(
    each_payment_outcome_is_emailed_once,
    a_mail_server_outage_is_dead_lettered_and_redriven
);

async fn each_payment_outcome_is_emailed_once(backend: Backend) {
    let port = free_port();
    let smtp = SmtpServer::start(port, &std::env::temp_dir().join(unique("maildir-")));
    let app = with_smtp(backend, port).await;

    let (paying, paying_email) = app.customer_with_card_as("4242424242424242").await;
    let (paid, status) = app.order_settles(&paying).await;
    assert_eq!(status, "success");
    let mails = eventually(
        "the receipt arrives",
        Duration::from_secs(20),
        async || smtp.to(&paying_email),
        |m| !m.is_empty(),
    )
    .await;
    let mail = &mails[0];
    assert!(
        mail.contains("Subject: Payment Successful - Thank You!"),
        "{mail}"
    );
    assert!(
        mail.contains("From: FoodFast <orders@example.com>"),
        "{mail}"
    );
    assert!(
        mail.contains("multipart/alternative") && mail.contains("text/html"),
        "{mail}"
    );
    for fact in [paid.as_str(), "12.50 USD", "Margherita", "Payment id: sim_"] {
        assert!(mail.contains(fact), "{fact} missing from {mail}");
    }

    let (declined, declined_email) = app.customer_with_card_as("4000000000000002").await;
    let (_, status) = app.order_settles(&declined).await;
    assert_eq!(status, "failed");
    let mails = eventually(
        "the failure email arrives",
        Duration::from_secs(20),
        async || smtp.to(&declined_email),
        |m| !m.is_empty(),
    )
    .await;
    assert!(
        mails[0].contains("Subject: Payment Failed - Action Required"),
        "{}",
        mails[0]
    );
    assert!(mails[0].contains("declined"), "{}", mails[0]);

    // One email each: nothing more arrives.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        (smtp.to(&paying_email).len(), smtp.to(&declined_email).len()),
        (1, 1)
    );
    app.stop().await;
}

async fn a_mail_server_outage_is_dead_lettered_and_redriven(backend: Backend) {
    // The mail server is not there yet: nothing listens on its port.
    let port = free_port();
    let app = with_smtp(backend, port).await;
    let (token, email) = app.customer_with_card_as("4242424242424242").await;
    let (_, status) = app.order_settles(&token).await;
    assert_eq!(status, "success");
    // Every attempt fails; after the last the email's event is dead-lettered.
    let dead = eventually(
        "the email's event is dead-lettered",
        Duration::from_secs(30),
        async || {
            kassa::dlq::list(&app.settings, &[&kassa_notifications::SERVICE])
                .await
                .map(|l| l.len())
                .unwrap_or(0)
        },
        |n| *n >= 1,
    )
    .await;
    assert_eq!(dead, 1);

    // The server comes back; the redrive sends the email, once.
    let smtp = SmtpServer::start(port, &std::env::temp_dir().join(unique("maildir-")));
    let redriven = kassa::dlq::redrive(&app.settings, &[&kassa_notifications::SERVICE])
        .await
        .unwrap();
    assert_eq!(redriven, 1);
    let mails = eventually(
        "the redriven email arrives",
        Duration::from_secs(20),
        async || smtp.to(&email),
        |m| !m.is_empty(),
    )
    .await;
    assert!(mails[0].contains("Subject: Payment Successful - Thank You!"));
    // A second redrive finds nothing, and nothing more arrives.
    assert_eq!(
        kassa::dlq::redrive(&app.settings, &[&kassa_notifications::SERVICE])
            .await
            .unwrap(),
        0
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.to(&email).len(), 1);
    app.stop().await;
}
