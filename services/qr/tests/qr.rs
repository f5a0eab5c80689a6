//! Pickup codes on both backends: issued for each dispensable unit of a paid order, redeemed
//! once and only by a registered dispenser's signed request, each refusal named, expired codes
//! replaced on request (on a clock the test sets), revoked with their order, and the order
//! completed once when its last unit is handed out. 100 dispensers racing for one code: one wins.

use std::sync::Arc;

use axum::{Router, http::Method, http::StatusCode};
use chrono::Duration;
use kassa_contracts::{
    Envelope, EventContext,
    events::{OrderCancelled, OrderReady, OrderedLine},
};
use kassa_platform::{
    bus::Handler,
    db::Db,
    migrate,
    testing::{Answer, Throwaway, call, outbox_events},
};
use serde_json::{Value, json};
use uuid::Uuid;

struct Qr {
    app: Router,
    handler: Arc<dyn Handler>,
    db: Db,
}

async fn qr(db: &Db) -> Qr {
    migrate::run(db, &[&migrate::PLATFORM, &kassa_qr::MIGRATIONS])
        .await
        .unwrap();
    let infra = kassa_platform::testing::infra(&kassa_qr::SERVICE, db.clone());
    let parts = (kassa_qr::SERVICE.build)(&infra).unwrap();
    Qr {
        // The kiosk's and the staff's routes, as the staff calls them; a dispenser's are
        // proved by their signature whoever sends them.
        app: kassa_platform::testing::acting_as(parts.api, kassa_platform::auth::Role::Staff),
        handler: parts.handler.unwrap(),
        db: db.clone(),
    }
}

struct Device {
    id: String,
    secret: String,
}

impl Qr {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        call(&self.app, method, path, &[], body).await
    }

    async fn device(&self, name: &str) -> Device {
        let made = self
            .call(
                Method::POST,
                "/api/QrCode/devices",
                Some(json!({"name": name})),
            )
            .await;
        assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.json);
        Device {
            id: made.json["deviceId"].as_str().unwrap().to_owned(),
            secret: made.json["secret"].as_str().unwrap().to_owned(),
        }
    }

    /// The order paid, with `lines` (product, quantity, dispensable).
    async fn paid(&self, order: Uuid, lines: &[(Uuid, i64, bool)]) {
        let paid = OrderReady {
            order_id: order,
            lines: lines
                .iter()
                .map(|(product_id, quantity, is_dispensable)| OrderedLine {
                    product_id: *product_id,
                    name: "Cola".into(),
                    quantity: *quantity,
                    unit_price_minor: 150,
                    is_dispensable: *is_dispensable,
                })
                .collect(),
        };
        let event = Envelope::new("orders", order, &paid, &EventContext::new("test"));
        self.handler.handle(&event).await.unwrap();
    }

    async fn codes(&self, order: Uuid) -> Vec<String> {
        let answer = self
            .call(
                Method::POST,
                "/api/QrCode/generate",
                Some(json!({"orderId": order})),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.json);
        answer.json["codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// `device` asks to redeem `code`, signed with `secret` at `at` (seconds since 1970).
    async fn validate(&self, code: &str, device: &str, secret: &str, at: i64) -> Answer {
        let signature = kassa_platform::signing::sign_hex(
            secret.as_bytes(),
            &[format!("{code}:{device}:{at}").as_bytes()],
        );
        self.call(
            Method::POST,
            "/api/QrCode/validate",
            Some(
                json!({"code": code, "deviceId": device, "timestamp": at, "signature": signature}),
            ),
        )
        .await
    }
}

fn now() -> i64 {
    kassa_contracts::now().timestamp()
}

fn refusal(answer: &Answer) -> (u16, &str) {
    (
        answer.status.as_u16(),
        answer.json["code"].as_str().unwrap_or(""),
    )
}

async fn codes_are_redeemed_once_by_a_dispenser(t: Throwaway) {
    let qr = qr(&t.db).await;
    let dispenser = qr.device("Lobby dispenser").await;
    let other = qr.device("Other dispenser").await;
    let (cola, sandwich) = (Uuid::now_v7(), Uuid::now_v7());
    let order = Uuid::now_v7();
    // Two colas from the dispenser, a sandwich from the counter: two codes.
    qr.paid(order, &[(cola, 2, true), (sandwich, 1, false)])
        .await;
    let codes = qr.codes(order).await;
    assert_eq!(codes.len(), 2);
    // Asking again gives the same codes, not new ones.
    assert_eq!(qr.codes(order).await, codes);

    // What is refused, and why.
    let first = &codes[0];
    assert_eq!(
        refusal(
            &qr.validate(first, &Uuid::now_v7().to_string(), "guess", now())
                .await
        ),
        (403, "unknown_device")
    );
    assert_eq!(
        refusal(
            &qr.validate(first, &dispenser.id, &other.secret, now())
                .await
        ),
        (403, "bad_signature")
    );
    assert_eq!(
        refusal(
            &qr.validate(first, &dispenser.id, &dispenser.secret, now() - 600)
                .await
        ),
        (403, "stale_request")
    );
    assert_eq!(
        refusal(
            &qr.validate(
                &Uuid::new_v4().to_string(),
                &dispenser.id,
                &dispenser.secret,
                now()
            )
            .await
        ),
        (404, "unknown_code")
    );

    // Redeemed once; the second time it is used.
    let handed = qr
        .validate(first, &dispenser.id, &dispenser.secret, now())
        .await;
    assert_eq!(handed.status, StatusCode::OK, "{:?}", handed.json);
    assert_eq!(handed.json["productId"], cola.to_string());
    assert_eq!(
        refusal(&qr.validate(first, &other.id, &other.secret, now()).await),
        (409, "code_used")
    );
    // Not complete until the last unit is handed out; then once.
    let completions = |events: &[(String, Value)]| {
        events
            .iter()
            .filter(|(t, _)| t == "pickup.completed")
            .count()
    };
    assert_eq!(completions(&outbox_events(&t.db).await), 0);
    assert_eq!(qr.codes(order).await, [codes[1].clone()]);
    let last = qr
        .validate(&codes[1], &other.id, &other.secret, now())
        .await;
    assert_eq!(last.status, StatusCode::OK);
    assert_eq!(completions(&outbox_events(&t.db).await), 1);
    assert!(qr.codes(order).await.is_empty());

    // An order with nothing to dispense completes when paid; one without lines is not ours.
    let counter_only = Uuid::now_v7();
    qr.paid(counter_only, &[(sandwich, 1, false)]).await;
    assert_eq!(completions(&outbox_events(&t.db).await), 2);
    let checkout = Uuid::now_v7();
    qr.paid(checkout, &[]).await;
    let unknown = qr
        .call(
            Method::POST,
            "/api/QrCode/generate",
            Some(json!({"orderId": checkout})),
        )
        .await;
    assert_eq!(refusal(&unknown), (404, "order_not_found"));

    // Expired codes are refused and replaced on request.
    let late = Uuid::now_v7();
    let mut tx = t.db.begin().await.unwrap();
    kassa_qr::codes::note_pickups(
        &mut tx,
        late,
        &[OrderedLine {
            product_id: cola,
            name: "Cola".into(),
            quantity: 1,
            unit_price_minor: 150,
            is_dispensable: true,
        }],
    )
    .await
    .unwrap();
    let old = kassa_qr::codes::issue(
        &mut tx,
        late,
        kassa_contracts::now() - Duration::minutes(16),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let old = old[0].id.to_string();
    assert_eq!(
        refusal(
            &qr.validate(&old, &dispenser.id, &dispenser.secret, now())
                .await
        ),
        (410, "code_expired")
    );
    let fresh = qr.codes(late).await;
    assert_eq!(fresh.len(), 1);
    assert_ne!(fresh[0], old);

    // Cancelled: its codes are no good, and none are made.
    let envelope = Envelope::new(
        "orders",
        late,
        &OrderCancelled { order_id: late },
        &EventContext::new("test"),
    );
    qr.handler.handle(&envelope).await.unwrap();
    assert_eq!(
        refusal(
            &qr.validate(&fresh[0], &dispenser.id, &dispenser.secret, now())
                .await
        ),
        (409, "code_revoked")
    );
    let after = qr
        .call(
            Method::POST,
            "/api/QrCode/generate",
            Some(json!({"orderId": late})),
        )
        .await;
    assert_eq!(refusal(&after), (409, "order_cancelled"));
    let _ = qr.db.clone();
    t.drop_now().await;
}

/// 100 validations of one code at once: exactly one hands the unit out.
async fn one_code_one_unit(t: Throwaway) {
    let qr = qr(&t.db).await;
    let dispenser = qr.device("Lobby dispenser").await;
    let order = Uuid::now_v7();
    qr.paid(order, &[(Uuid::now_v7(), 1, true)]).await;
    let code = qr.codes(order).await.remove(0);
    let at = now();
    let attempts = (0..100).map(|_| qr.validate(&code, &dispenser.id, &dispenser.secret, at));
    let answers = futures_util::future::join_all(attempts).await;
    let won = answers
        .iter()
        .filter(|a| a.status == StatusCode::OK)
        .count();
    assert_eq!(won, 1);
    for lost in answers.iter().filter(|a| a.status != StatusCode::OK) {
        assert_eq!(refusal(lost), (409, "code_used"), "{:?}", lost.json);
    }
    let completions = outbox_events(&t.db)
        .await
        .into_iter()
        .filter(|(t, _)| t == "pickup.completed")
        .count();
    assert_eq!(completions, 1);
    t.drop_now().await;
}

kassa_platform::on_both_databases!(codes_are_redeemed_once_by_a_dispenser, one_code_one_unit);
