//! Stripe as the provider, against localstripe (a stateful fake Stripe server from PyPI, started
//! here on a port of its own): cards saved as PaymentMethods attached to a Customer, orders
//! charged through PaymentIntents, and Stripe's test cards meaning what they mean there.

use crate::support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Backend, TestApp, servers::LocalStripe, spawn_app_with};

/// The services these scenarios exercise, and those they call or hear from.
const SERVICES: &[&str] = &["gateway", "users", "orders", "payments"];

on_both_backends!(orders_are_charged_through_stripe);

async fn post(app: &TestApp, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
    let mut req = app
        .client
        .post(format!("{}{path}", app.gateway))
        .json(&body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let answer = req.send().await.unwrap();
    let status = answer.status();
    (status, answer.json().await.unwrap_or(Value::Null))
}

/// A new customer, signed in: their token.
async fn customer(app: &TestApp) -> String {
    let email = format!("{}@example.com", support::unique("s"));
    let (status, _) = post(
        app,
        "/api/auth/signup",
        None,
        json!({"name": "Stripe Customer", "email": email, "password": "a long password"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, signed) = post(
        app,
        "/api/auth/signin",
        None,
        json!({"email": email, "password": "a long password"}),
    )
    .await;
    signed["data"]["token"].as_str().unwrap().to_owned()
}

async fn save(app: &TestApp, token: &str, number: &str) -> (StatusCode, Value) {
    post(
        app,
        "/api/payment-methods/add",
        Some(token),
        json!({"card_number": number, "expiry_date": "12/34", "cardholder_name": "Stripe Customer", "cvc": "123"}),
    )
    .await
}

/// Orders 12.50 and waits for its payment to settle: the order's status and its payment.
async fn order(app: &TestApp, token: &str) -> (String, Value) {
    let (status, created) = post(
        app,
        "/api/order/create",
        Some(token),
        json!({"item": "Margherita", "amount": 12.5}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["data"]["orderId"].as_str().unwrap().to_owned();
    let order = app.order_reaches(&id, &["PAID", "FAILED"]).await;
    let payment = app
        .payment_of(&id, &["APPROVED", "DECLINED", "FAILED"])
        .await;
    (order["status"].as_str().unwrap().to_owned(), payment)
}

async fn orders_are_charged_through_stripe(backend: Backend) {
    let stripe = LocalStripe::start();
    let app = spawn_app_with(backend, SERVICES, |s| {
        s.options.set("provider", "stripe");
        s.options.set("stripe-secret-key", "sk_test_kassa");
        s.options.set("stripe-api-base", stripe.url.as_str());
    })
    .await;

    // 4242…: saved, charged, paid; the payment's reference is Stripe's PaymentIntent.
    let ada = customer(&app).await;
    let (status, saved) = save(&app, &ada, "4242424242424242").await;
    assert_eq!(status, StatusCode::CREATED, "{saved}");
    let (status, payment) = order(&app, &ada).await;
    assert_eq!(status, "PAID", "{payment}");
    let intent = payment["providerReference"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(intent.starts_with("pi_"), "{payment}");
    let stripe_side: Value = app
        .client
        .get(format!("{}/v1/payment_intents/{intent}", stripe.url))
        .bearer_auth("sk_test_kassa")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stripe_side["status"], "succeeded", "{stripe_side}");
    assert_eq!(stripe_side["amount"], 1250);
    assert_eq!(stripe_side["currency"], "usd");
    assert_eq!(stripe_side["metadata"]["paymentId"], payment["id"]);
    // Charged as the saved card's Customer, whose card it is.
    let charged_as = stripe_side["customer"].as_str().unwrap_or_default();
    assert_eq!(
        stripe_side["latest_charge"]["customer"], charged_as,
        "{stripe_side}"
    );
    assert!(
        stripe_side["customer"]
            .as_str()
            .is_some_and(|c| c.starts_with("cus_")),
        "{stripe_side}"
    );

    // Cancelling the paid order refunds it through Stripe.
    let order_id = payment["orderId"].as_str().unwrap().to_owned();
    let (status, _) = app
        .patch(&format!("/api/orders/{order_id}/cancel"), None)
        .await;
    assert_eq!(status, 202);
    app.payment_of(&order_id, &["REFUNDED"]).await;
    let refunded: Value = app
        .client
        .get(format!("{}/v1/payment_intents/{intent}", stripe.url))
        .bearer_auth("sk_test_kassa")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        refunded["latest_charge"]["amount_refunded"], 1250,
        "{refunded}"
    );

    // 4000000000000341: Stripe saves it and declines the charge.
    let grace = customer(&app).await;
    let (status, saved) = save(&app, &grace, "4000000000000341").await;
    assert_eq!(status, StatusCode::CREATED, "{saved}");
    let (status, payment) = order(&app, &grace).await;
    assert_eq!(status, "FAILED", "{payment}");
    assert_eq!(payment["status"], "DECLINED");

    // 4000000000000002: Stripe declines it as soon as it is attached, so it is never saved.
    let (status, refused) = save(&app, &grace, "4000000000000002").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["code"], "card_refused");
    app.stop().await;
    drop(stripe);
}
