//! The payment cache against real storage (an SQLite file) and both cache adapters (memory and
//! the local Redis): reads cache whatever the status, and a read racing a change never puts the
//! older state back.

use super::common;

use std::{sync::Arc, time::Duration};

use axum::extract::State;
use common::processing_payment;
use kassa_payments::{
    api::{self, AppState},
    domain::{Payment, PaymentStatus},
    store,
};
use kassa_platform::{
    cache::{Cache, MemoryCache, RedisCache},
    db::{Db, DbLocation},
    migrate,
};
use uuid::Uuid;

async fn database() -> Db {
    let path = std::env::temp_dir().join(format!("kassa-payment-cache-{}.db", Uuid::new_v4()));
    let db = Db::connect(&DbLocation::Sqlite { path }).await.unwrap();
    migrate::run(&db, &[&migrate::PLATFORM, &kassa_payments::MIGRATIONS])
        .await
        .unwrap();
    db
}

/// Fails the test with one line unless Redis accepts connections (a cache that cannot reach it
/// misses quietly, which would fail the tests far from the cause).
fn require_redis() {
    let addr = "127.0.0.1:6379";
    if std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2)).is_err()
    {
        panic!("Redis is not reachable at {addr}: start it (scripts/test does)");
    }
}

fn caches() -> Vec<Arc<dyn Cache>> {
    require_redis();
    let redis = RedisCache::new(
        "redis://127.0.0.1:6379/",
        &format!("test-{}", Uuid::new_v4()),
    )
    .unwrap();
    vec![Arc::new(MemoryCache::new(100)), Arc::new(redis)]
}

async fn approve(db: &Db, id: Uuid) -> Payment {
    let before = store::find(db, id).await.unwrap().unwrap();
    let mut tx = db.begin().await.unwrap();
    let changed = store::transition(&mut tx, &before, PaymentStatus::Approved, None, Some("ref"))
        .await
        .unwrap()
        .expect("still PROCESSING");
    tx.commit().await.unwrap();
    let stored = store::find(db, id).await.unwrap().unwrap();
    assert_eq!(changed, stored, "transition returns the payment as stored");
    stored
}

/// The status `GET /api/payments/{id}` answers.
async fn status_served(state: &AppState, id: Uuid) -> String {
    // The staff's view: every payment, through the cache.
    let staff = kassa_platform::auth::Access::new(kassa_platform::auth::Caller::Known(
        kassa_platform::auth::Claims::new(
            Uuid::now_v7(),
            "staff@example.com",
            kassa_platform::auth::Role::Staff,
            chrono::Utc::now(),
            chrono::Duration::hours(1),
        ),
    ));
    let response = api::get_payment(
        State(state.clone()),
        staff,
        kassa_platform::http::PathId(id),
    )
    .await
    .unwrap_or_else(|_| panic!("payment {id} not served"));
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let view: serde_json::Value = serde_json::from_slice(&body).unwrap();
    view["status"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_read_caches_the_payment_whatever_its_status() {
    let db = database().await;
    for cache in caches() {
        let state = AppState {
            db: db.clone(),
            cache,
        };
        let payment = processing_payment(&db).await;
        assert_eq!(status_served(&state, payment.id).await, "PROCESSING");
        assert!(state.cache.get(&api::cache_key(payment.id)).await.is_some());
        // Changed without telling the cache: the cached read is what is served.
        approve(&db, payment.id).await;
        assert_eq!(status_served(&state, payment.id).await, "PROCESSING");
    }
}

#[tokio::test]
async fn a_change_replaces_the_entry_and_a_racing_read_cannot_undo_it() {
    let db = database().await;
    for cache in caches() {
        let state = AppState {
            db: db.clone(),
            cache,
        };
        let before = processing_payment(&db).await;
        assert_eq!(status_served(&state, before.id).await, "PROCESSING");
        let after = approve(&db, before.id).await;
        api::cache_payment(state.cache.as_ref(), &after).await;
        assert_eq!(status_served(&state, before.id).await, "APPROVED");
        // A read that loaded the payment before the change and writes it after.
        api::cache_payment(state.cache.as_ref(), &before).await;
        assert_eq!(status_served(&state, before.id).await, "APPROVED");
    }
}

#[tokio::test]
async fn a_later_status_wins_even_when_its_clock_was_behind() {
    for cache in caches() {
        let db = database().await;
        let state = AppState {
            db: db.clone(),
            cache,
        };
        let before = processing_payment(&db).await;
        let mut after = approve(&db, before.id).await;
        // The replica that approved it had a clock a minute behind the one that read it.
        after.updated_at = before.updated_at - chrono::Duration::minutes(1);
        api::cache_payment(state.cache.as_ref(), &after).await;
        api::cache_payment(state.cache.as_ref(), &before).await;
        assert_eq!(status_served(&state, before.id).await, "APPROVED");
    }
}
