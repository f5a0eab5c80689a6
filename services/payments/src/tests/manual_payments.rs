//! Payments recorded by hand (seed 000's) through their routes, kassa's and the seed's, on both
//! backends: the rules of money, the events, the list of both kinds, and the cache in front of
//! the reads, with Redis up, and with Redis killed.

use std::{
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use axum::{
    Router,
    http::{Method, StatusCode},
};
use kassa_contracts::Envelope;
use kassa_payments::{api, manual};
use kassa_platform::{
    cache::{Cache, MemoryCache, RedisCache},
    db::Db,
    known::{self, RecordEvent},
    migrate, resource,
    testing::{Answer, Throwaway, call, call_text, eventually, outbox_events},
};
use serde_json::{Value, json};
use uuid::Uuid;

async fn app(db: &Db, cache: Arc<dyn Cache>) -> Router {
    migrate::run(db, &[&migrate::PLATFORM, &kassa_payments::MIGRATIONS])
        .await
        .unwrap();
    let records = kassa_payments::manual_payments(db.clone(), cache.clone());
    // As the gym's front desk calls them.
    kassa_platform::testing::acting_as(
        resource::router(records, manual::MOUNTS).merge(api::router(api::AppState {
            db: db.clone(),
            cache,
        })),
        kassa_platform::auth::Role::Desk,
    )
}

/// What payments notes of a member from `member.created` (the consumer's path is the gym test's,
/// over a real bus).
async fn member_known(db: &Db, id: Uuid, change: &str) {
    let envelope = Envelope::record(
        "members",
        id,
        format!("member.{change}"),
        json!({"id": id}),
        &kassa_contracts::EventContext::new("test"),
    );
    let mut tx = db.begin().await.unwrap();
    known::note(&mut tx, &RecordEvent::decode(&envelope).unwrap())
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

async fn send(app: &Router, method: Method, uri: &str, body: Option<Value>) -> Answer {
    call(app, method, uri, &[], body).await
}

fn refused(answer: &Answer) -> (StatusCode, Option<&str>) {
    (answer.status, answer.json["code"].as_str())
}

/// Records a cash payment of `amount` for `member` and returns its id.
async fn cash_payment(app: &Router, member: Uuid, amount: i64) -> String {
    let created = send(
        app,
        Method::POST,
        "/api/payments/manual",
        Some(json!({"memberId": member, "amount": amount, "paymentMethod": "Cash"})),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.json);
    created.json["id"].as_str().unwrap().to_owned()
}

/// Changes the amount of payment `id` through kassa's route.
async fn change_amount(app: &Router, id: &str, amount: i64) -> Answer {
    send(
        app,
        Method::PATCH,
        &format!("/api/payments/manual/{id}"),
        Some(json!({"amount": amount})),
    )
    .await
}

async fn manual_payments(t: Throwaway) {
    let app = app(&t.db, Arc::new(MemoryCache::new(100))).await;
    let member = Uuid::now_v7();
    let body = json!({"memberId": member, "amount": 150.50, "paymentMethod": "CreditCard", "status": "Pending"});

    // A member payments has not heard of is refused, until it has.
    let unknown = send(&app, Method::POST, "/Payment", Some(body.clone())).await;
    assert_eq!(
        refused(&unknown),
        (StatusCode::CONFLICT, Some("unknown_member"))
    );
    member_known(&t.db, member, "created").await;
    let created = send(&app, Method::POST, "/Payment", Some(body.clone())).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.json);
    let payment = created.json.clone();
    assert_eq!(
        (
            &payment["amount"],
            &payment["currency"],
            &payment["status"],
            &payment["paidAt"]
        ),
        (
            &json!(150.5),
            &json!("USD"),
            &json!("Pending"),
            &Value::Null
        )
    );
    let id = payment["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created.header("location"),
        Some(format!("/Payment/{id}").as_str())
    );

    // Money exactly as sent, or a clear refusal naming the field.
    for (sent, code, param) in [
        (json!({"amount": 150.555}), "invalid_amount", "amount"),
        (json!({"amount": 0}), "invalid_amount", "amount"),
        (json!({"amount": -5}), "invalid_amount", "amount"),
        (json!({"amount": "150.50"}), "invalid_field", "amount"),
        (json!({"amount": 1e9}), "invalid_amount", "amount"),
        (json!({"currency": "JPY"}), "invalid_currency", "currency"),
        (json!({"currency": " usd"}), "invalid_currency", "currency"),
        (
            json!({"paymentMethod": "Cheque"}),
            "invalid_field",
            "paymentMethod",
        ),
        (
            json!({"status": "Completed"}),
            "invalid_status_change",
            "status",
        ),
        (
            json!({"paidAt": "2026-01-01T00:00:00Z"}),
            "read_only_field",
            "paidAt",
        ),
    ] {
        let mut wrong = body.clone();
        for (k, v) in sent.as_object().unwrap() {
            wrong[k] = v.clone();
        }
        let answer = send(&app, Method::POST, "/api/payments/manual", Some(wrong)).await;
        assert!(answer.status.is_client_error(), "{sent}: {:?}", answer.json);
        assert_eq!(
            (answer.json["code"].as_str(), answer.json["param"].as_str()),
            (Some(code), Some(param)),
            "{sent}: {:?}",
            answer.json
        );
    }
    // Exactly: a double would read these digits as 0.1.
    let precise = call_text(
        &app,
        Method::POST,
        "/api/payments/manual",
        &[],
        Some(&format!(
            r#"{{"memberId":"{member}","amount":0.100000000000000001,"paymentMethod":"Cash"}}"#
        )),
    )
    .await;
    assert_eq!(
        refused(&precise),
        (StatusCode::BAD_REQUEST, Some("invalid_amount"))
    );
    let euros = send(
        &app,
        Method::POST,
        "/api/payments/manual",
        Some(
            json!({"memberId": member, "amount": 0.3, "currency": "eur", "paymentMethod": "Cash"}),
        ),
    )
    .await;
    assert_eq!(euros.status, StatusCode::CREATED, "{:?}", euros.json);
    assert_eq!(
        (&euros.json["amount"], &euros.json["currency"]),
        (&json!(0.3), &json!("EUR"))
    );

    // The seed's update: the whole record back, 204. Completing stamps paidAt.
    let mut completed = payment.clone();
    completed["status"] = json!("Completed");
    let put = send(
        &app,
        Method::PUT,
        &format!("/Payment/{id}"),
        Some(completed),
    )
    .await;
    assert_eq!(put.status, StatusCode::NO_CONTENT, "{:?}", put.json);
    let read = send(&app, Method::GET, &format!("/Payment/{id}"), None).await;
    assert_eq!(read.json["status"], "Completed", "{:?}", read.json);
    assert!(read.json["paidAt"].is_string());
    assert_eq!(read.header("etag"), Some("\"2\""));

    // Paid is paid: the amount stays, a completed payment can only be refunded, and it is kept.
    for (patch, code) in [
        (json!({"amount": 10}), "payment_settled"),
        (json!({"status": "Pending"}), "invalid_status_change"),
    ] {
        let answer = send(
            &app,
            Method::PATCH,
            &format!("/api/payments/manual/{id}"),
            Some(patch),
        )
        .await;
        assert_eq!(refused(&answer), (StatusCode::CONFLICT, Some(code)));
    }
    let delete = send(&app, Method::DELETE, &format!("/Payment/{id}"), None).await;
    assert_eq!(
        refused(&delete),
        (StatusCode::CONFLICT, Some("payment_settled"))
    );
    let refunded = send(
        &app,
        Method::PATCH,
        &format!("/api/payments/manual/{id}"),
        Some(json!({"status": "Refunded"})),
    )
    .await;
    assert_eq!(refunded.status, StatusCode::OK, "{:?}", refunded.json);
    assert_eq!(refunded.json["paidAt"], read.json["paidAt"]);

    // A deleted member pays no more; their payments stay.
    member_known(&t.db, member, "deleted").await;
    let after = send(&app, Method::POST, "/Payment", Some(body.clone())).await;
    assert_eq!(
        refused(&after),
        (StatusCode::CONFLICT, Some("unknown_member"))
    );
    let pending = euros.json["id"].as_str().unwrap();
    let cancelled = send(
        &app,
        Method::PATCH,
        &format!("/api/payments/manual/{pending}"),
        Some(json!({"status": "Cancelled"})),
    )
    .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{:?}", cancelled.json);
    let closed = send(
        &app,
        Method::PATCH,
        &format!("/api/payments/manual/{pending}"),
        Some(json!({"amount": 1})),
    )
    .await;
    assert_eq!(
        refused(&closed),
        (StatusCode::CONFLICT, Some("payment_closed"))
    );
    let removed = send(&app, Method::DELETE, &format!("/Payment/{pending}"), None).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    let gone = send(&app, Method::GET, &format!("/Payment/{pending}"), None).await;
    assert_eq!(
        refused(&gone),
        (StatusCode::NOT_FOUND, Some("payment_not_found"))
    );

    // Lists: the seed's array, kassa's page filtered by member, and all payments with their kind.
    let seed_list = send(&app, Method::GET, "/Payment", None).await;
    assert_eq!(seed_list.json.as_array().map(Vec::len), Some(1));
    let by_member = send(
        &app,
        Method::GET,
        &format!("/api/payments/manual?memberId={member}&status=Refunded"),
        None,
    )
    .await;
    assert_eq!(by_member.json["meta"]["total"], 1, "{:?}", by_member.json);
    let all = send(&app, Method::GET, "/api/payments", None).await;
    assert_eq!(all.json["meta"]["total"], 1, "{:?}", all.json);
    let listed = &all.json["data"][0];
    assert_eq!(
        (
            &listed["kind"],
            &listed["memberId"],
            &listed["amount"],
            &listed["paymentMethod"]
        ),
        (
            &json!("manual"),
            &json!(member),
            &json!(150.5),
            &json!("CreditCard")
        )
    );

    // Every change is an event with the payment as it is after it (as it was, for a delete).
    let events = outbox_events(&t.db).await;
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "payment.created",
            "payment.created",
            "payment.updated",
            "payment.updated",
            "payment.updated",
            "payment.deleted"
        ]
    );
    assert_eq!(events[0].1, payment);
    assert_eq!(events[2].1["status"], "Completed");
    assert_eq!(events[5].1["status"], "Cancelled");
    t.drop_now().await;
}

kassa_platform::on_both_databases!(manual_payments);

/// A Redis server of the test's own, on a free port, so that killing it troubles no one else.
struct OwnRedis {
    port: u16,
    child: Child,
}

impl OwnRedis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (installed with Redis, which scripts/test starts)");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        OwnRedis { port, child }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn kill(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The cache in front of the reads: a read after a change never serves the state before it,
/// whichever cache, and with Redis killed every read still answers from the database.
async fn cached_reads(t: Throwaway) {
    let mut redis = OwnRedis::start();
    let caches: Vec<(&str, Arc<dyn Cache>)> = vec![
        ("memory", Arc::new(MemoryCache::new(100))),
        (
            "redis",
            Arc::new(RedisCache::new(&redis.url(), &format!("test-{}", Uuid::now_v7())).unwrap()),
        ),
    ];
    let member = Uuid::now_v7();
    for (name, cache) in &caches {
        let app = app(&t.db, cache.clone()).await;
        member_known(&t.db, member, "created").await;
        let id = cash_payment(&app, member, 20).await;
        let key = format!("manual_payments:{id}");
        assert!(cache.get(&key).await.is_some(), "{name}: created, cached");
        for amount in [21, 22, 23] {
            let changed = change_amount(&app, &id, amount).await;
            assert_eq!(changed.status, StatusCode::OK, "{name}: {:?}", changed.json);
            let read = send(&app, Method::GET, &format!("/Payment/{id}"), None).await;
            assert_eq!(
                read.json["amount"], amount,
                "{name}: the read after a change"
            );
        }
        // A read that loaded the row before a change cannot put it back after the change.
        let stale = send(&app, Method::GET, &format!("/Payment/{id}"), None).await;
        let deleted = send(
            &app,
            Method::DELETE,
            &format!("/api/payments/manual/{id}"),
            None,
        )
        .await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT);
        cache
            .put_if_newer(
                &key,
                4,
                serde_json::to_vec(&stale.json).unwrap(),
                manual::CACHE_TTL,
            )
            .await;
        assert!(
            cache.get(&key).await.is_none(),
            "{name}: a deleted payment stays out of the cache"
        );
        let gone = send(&app, Method::GET, &format!("/Payment/{id}"), None).await;
        assert_eq!(gone.status, StatusCode::NOT_FOUND, "{name}");
    }

    // Redis killed: reads come from the database, changes are still read back at once.
    let redis_cache = caches[1].1.clone();
    let app = app(&t.db, redis_cache).await;
    let id = cash_payment(&app, member, 30).await;
    redis.kill();
    for amount in [31, 32] {
        let started = std::time::Instant::now();
        let changed = change_amount(&app, &id, amount).await;
        assert_eq!(changed.status, StatusCode::OK, "{:?}", changed.json);
        let read = send(&app, Method::GET, &format!("/Payment/{id}"), None).await;
        assert_eq!(
            (read.status, &read.json["amount"]),
            (StatusCode::OK, &json!(amount))
        );
        let listed = send(&app, Method::GET, "/api/payments/manual", None).await;
        assert_eq!(listed.status, StatusCode::OK);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a dead cache must not stall requests"
        );
    }
    t.drop_now().await;
}

kassa_platform::on_both_databases!(cached_reads);

/// The memory cache, but the next `failing` writes go unanswered (as when Redis is slow or
/// refuses writes): reads still answer.
struct Flaky {
    inner: MemoryCache,
    failing: std::sync::atomic::AtomicU32,
}

impl Flaky {
    /// Whether this write is one of those lost.
    fn fails(&self) -> bool {
        use std::sync::atomic::Ordering;
        self.failing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

#[async_trait::async_trait]
impl Cache for Flaky {
    async fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.inner.get(key).await
    }

    async fn write(
        &self,
        key: &str,
        write: kassa_platform::cache::Write,
        value: Option<Vec<u8>>,
        ttl: Duration,
    ) -> bool {
        !self.fails() && self.inner.write(key, write, value, ttl).await
    }

    async fn remove(&self, key: &str) {
        if !self.fails() {
            self.inner.remove(key).await;
        }
    }

    async fn count(&self, key: &str, window: Duration) -> Option<(u64, Duration)> {
        self.inner.count(key, window).await
    }

    async fn ping(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Writes the cache does not answer are tried again: a change and a deletion reach it within
/// seconds, so a stale entry does not outlive them by its five minutes.
async fn unanswered_writes_are_retried(t: Throwaway) {
    let flaky = Arc::new(Flaky {
        inner: MemoryCache::new(100),
        failing: std::sync::atomic::AtomicU32::new(0),
    });
    let app = app(&t.db, flaky.clone()).await;
    let member = Uuid::now_v7();
    member_known(&t.db, member, "created").await;
    let id = cash_payment(&app, member, 50).await;
    let read = async || send(&app, Method::GET, &format!("/Payment/{id}"), None).await;
    assert_eq!(read().await.json["amount"], 50);
    // Three writes lost: the tombstone before the commit (its fallback removal is the second),
    // the write after it.
    flaky.failing.store(3, std::sync::atomic::Ordering::SeqCst);
    let changed = change_amount(&app, &id, 51).await;
    assert_eq!(changed.status, StatusCode::OK);
    eventually(
        "the change to reach the cache",
        Duration::from_secs(5),
        async || read().await.json["amount"].clone(),
        |amount| *amount == json!(51),
    )
    .await;
    // Four for the deletion: the tombstone before the commit and the removal it falls back on,
    // the tombstone after it, a first retry.
    flaky.failing.store(4, std::sync::atomic::Ordering::SeqCst);
    let deleted = send(
        &app,
        Method::DELETE,
        &format!("/api/payments/manual/{id}"),
        None,
    )
    .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    eventually(
        "the deletion to reach the cache",
        Duration::from_secs(5),
        async || read().await.status,
        |status| *status == StatusCode::NOT_FOUND,
    )
    .await;
    t.drop_now().await;
}

kassa_platform::on_both_databases!(unanswered_writes_are_retried);
