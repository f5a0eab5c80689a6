//! Stripe's webhook on both backends: a signed outcome settles a PROCESSING payment once, as a
//! charge's answer would, and an approval for a payment cancelled meanwhile is voided; an
//! unsigned, mis-signed or stale one changes nothing, nor does one about another PaymentIntent,
//! amount or currency than the payment's.

use super::common;

use std::{sync::Arc, time::Duration};

use axum::{Router, http::Method, http::StatusCode};
use common::processing_payment;
use hmac::{KeyInit, Mac};
use kassa_payments::{
    domain::{Payment, PaymentStatus},
    refunds::Refunds,
    store,
    webhook::{self, Webhook},
};
use kassa_platform::{
    cache::MemoryCache,
    db::Db,
    migrate,
    testing::{Throwaway, call_text, outbox_events},
};
use serde_json::json;
use uuid::Uuid;

const SECRET: &str = "whsec_kassa_tests";

fn webhook_app(db: &Db, secret: Option<&str>) -> Router {
    webhook::router(Webhook {
        db: db.clone(),
        cache: Arc::new(MemoryCache::new(100)),
        refunds: Refunds::default(),
        secret: secret.map(str::to_owned),
    })
}

/// `Stripe-Signature` for `body`, signed `age` seconds ago with `secret`.
fn signature(secret: &str, body: &str, age: i64) -> String {
    let t = chrono::Utc::now().timestamp() - age;
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={hex}")
}

/// A PROCESSING payment whose charge Stripe answered `processing`, with PaymentIntent `pi_later`.
async fn waiting_payment(db: &Db) -> Payment {
    let payment = processing_payment(db).await;
    store::keep_reference(db, payment.id, "pi_later")
        .await
        .unwrap();
    store::find(db, payment.id).await.unwrap().unwrap()
}

/// An event about PaymentIntent `pi_later`, charged for `payment` (12.50 USD).
fn event(kind: &str, payment: &Payment) -> String {
    event_with(kind, payment, "pi_later", 1_250, "usd")
}

fn event_with(kind: &str, payment: &Payment, intent: &str, amount: i64, currency: &str) -> String {
    json!({
        "id": format!("evt_{}", Uuid::new_v4().simple()),
        "type": kind,
        "data": {"object": {
            "id": intent,
            "object": "payment_intent",
            "amount": amount,
            "currency": currency,
            "metadata": {"paymentId": payment.id},
            "last_payment_error": {"message": "Your card has insufficient funds."}
        }}
    })
    .to_string()
}

async fn send(
    app: &Router,
    body: &str,
    signature: Option<&str>,
) -> kassa_platform::testing::Answer {
    let headers: Vec<(&str, &str)> = signature
        .map(|s| ("stripe-signature", s))
        .into_iter()
        .collect();
    call_text(app, Method::POST, webhook::PATH, &headers, Some(body)).await
}

async fn later_outcomes(t: Throwaway) {
    migrate::run(&t.db, &[&migrate::PLATFORM, &kassa_payments::MIGRATIONS])
        .await
        .unwrap();
    let app = webhook_app(&t.db, Some(SECRET));
    let paid = waiting_payment(&t.db).await;
    let body = event("payment_intent.succeeded", &paid);

    // Not signed, signed with another secret, signed too long ago, or altered: refused, and
    // the payment is as it was.
    let altered = body.replace("pi_later", "pi_other");
    for (body, sig) in [
        (body.as_str(), None),
        (body.as_str(), Some(signature("whsec_other", &body, 0))),
        (body.as_str(), Some(signature(SECRET, &body, 301))),
        (altered.as_str(), Some(signature(SECRET, &body, 0))),
    ] {
        let refused = send(&app, body, sig.as_deref()).await;
        assert_eq!(
            refused.status,
            StatusCode::UNAUTHORIZED,
            "{:?}",
            refused.json
        );
        assert_eq!(refused.json["code"], "invalid_signature");
    }
    assert_eq!(
        store::find(&t.db, paid.id).await.unwrap().unwrap().status,
        PaymentStatus::Processing
    );

    // Signed, but about another PaymentIntent, another amount or another currency (Stripe's
    // PaymentIntents of another charge naming this payment in their metadata): acknowledged,
    // and nothing changes.
    for (intent, amount, currency) in [
        ("pi_other", 1_250, "usd"),
        ("pi_later", 1, "usd"),
        ("pi_later", 1_250, "eur"),
        ("", 1_250, "usd"),
    ] {
        let body = event_with("payment_intent.succeeded", &paid, intent, amount, currency);
        let ignored = send(&app, &body, Some(&signature(SECRET, &body, 0))).await;
        assert_eq!(ignored.status, StatusCode::OK, "{:?}", ignored.json);
        assert_eq!(ignored.json, json!({"received": true, "applied": false}));
    }
    assert_eq!(
        store::find(&t.db, paid.id).await.unwrap().unwrap().status,
        PaymentStatus::Processing
    );
    // A payment whose PaymentIntent is not recorded yet (the charge's answer still on its
    // way): 409, so that Stripe sends the event again, and nothing changes.
    let unrecorded = processing_payment(&t.db).await;
    let early = event("payment_intent.succeeded", &unrecorded);
    let retry = send(&app, &early, Some(&signature(SECRET, &early, 0))).await;
    assert_eq!(retry.status, StatusCode::CONFLICT, "{:?}", retry.json);
    assert_eq!(retry.json["code"], "charge_not_recorded");
    store::keep_reference(&t.db, unrecorded.id, "pi_later")
        .await
        .unwrap();
    let later = send(&app, &early, Some(&signature(SECRET, &early, 0))).await;
    assert_eq!(later.json, json!({"received": true, "applied": true}));

    // Signed: the payment is approved with Stripe's reference, once.
    let applied = send(&app, &body, Some(&signature(SECRET, &body, 0))).await;
    assert_eq!(applied.status, StatusCode::OK, "{:?}", applied.json);
    assert_eq!(applied.json, json!({"received": true, "applied": true}));
    let stored = store::find(&t.db, paid.id).await.unwrap().unwrap();
    assert_eq!(stored.status, PaymentStatus::Approved);
    assert_eq!(stored.provider_reference.as_deref(), Some("pi_later"));
    let again = send(&app, &body, Some(&signature(SECRET, &body, 0))).await;
    assert_eq!(again.json, json!({"received": true, "applied": false}));

    // Approved after its order was cancelled: the payment stays CANCELLED, keeps Stripe's
    // reference, and the charge is to be voided by that reference.
    let cancelled = waiting_payment(&t.db).await;
    let mut tx = t.db.begin().await.unwrap();
    let changed = store::transition(
        &mut tx,
        &cancelled,
        PaymentStatus::Cancelled,
        Some("order cancelled"),
        None,
    )
    .await
    .unwrap();
    assert!(changed.is_some());
    tx.commit().await.unwrap();
    let body = event("payment_intent.succeeded", &cancelled);
    let voiding = send(&app, &body, Some(&signature(SECRET, &body, 0))).await;
    assert_eq!(voiding.json, json!({"received": true, "applied": true}));
    let stored = store::find(&t.db, cancelled.id).await.unwrap().unwrap();
    assert_eq!(stored.status, PaymentStatus::Cancelled);
    assert_eq!(stored.provider_reference.as_deref(), Some("pi_later"));
    let due = store::claim_due_refunds(&t.db, 10, Duration::from_secs(30))
        .await
        .unwrap();
    let due: Vec<(Uuid, &str)> = due
        .iter()
        .map(|d| (d.payment_id, d.kind.as_str()))
        .collect();
    assert_eq!(due, [(cancelled.id, "void")]);

    // A failure declines its payment; an event of another kind is acknowledged and ignored.
    let failed = waiting_payment(&t.db).await;
    let body = event("payment_intent.payment_failed", &failed);
    send(&app, &body, Some(&signature(SECRET, &body, 0))).await;
    let stored = store::find(&t.db, failed.id).await.unwrap().unwrap();
    assert_eq!(stored.status, PaymentStatus::Declined);
    assert_eq!(
        stored.reason.as_deref(),
        Some("Your card has insufficient funds.")
    );
    let other = event("customer.created", &processing_payment(&t.db).await);
    let ignored = send(&app, &other, Some(&signature(SECRET, &other, 0))).await;
    assert_eq!(ignored.json, json!({"received": true, "applied": false}));

    let types: Vec<String> = outbox_events(&t.db)
        .await
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(
        types,
        ["payment.approved", "payment.approved", "payment.declined"]
    );

    // Without a secret configured, nothing is taken.
    let closed = send(
        &webhook_app(&t.db, None),
        &body,
        Some(&signature(SECRET, &body, 0)),
    )
    .await;
    assert_eq!(closed.status, StatusCode::UNAUTHORIZED);
    assert_eq!(closed.json["code"], "webhook_not_configured");
    t.drop_now().await;
}

kassa_platform::on_both_databases!(later_outcomes);
