//! The messaging guarantees on both buses: the outbox publishes what a transaction committed and
//! nothing it rolled back, the inbox makes a redelivered event harmless, failures are retried
//! with backoff and dead-lettered after the last attempt (no hot loop), and a redrive brings
//! dead letters back.

use crate::support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use kassa_contracts::{Envelope, EventContext, events::Event};
use kassa_platform::{
    bus::{
        EventBus, Handler, HandlerError, Message, RetryPolicy, Subscription,
        memory::{self, MemoryBus},
        rabbit::{self, QueueSpec, RabbitBus},
    },
    db::{Db, DbLocation},
    inbox, migrate, outbox,
    shutdown::{self, ShutdownTrigger},
    sql,
};
use serde::Serialize;
use support::{AMQP_URL, Backend, Service, eventually, unique};

/// How long a fact may take to show.
const PATIENCE: Duration = Duration::from_secs(15);

#[derive(Serialize)]
struct Probe {
    n: u32,
}
impl Event for Probe {
    const TYPE: &'static str = "probe.happened";
    const VERSION: u32 = 1;
}

/// Fails its first `failures` calls, then records one effect per event, guarded by the inbox.
struct Recorder {
    db: Db,
    failures: u32,
    /// Calls begun.
    calls: AtomicU32,
    /// Calls ended, their transaction committed or rolled back.
    handled: AtomicU32,
}

impl Recorder {
    fn new(db: Db, failures: u32) -> Self {
        Recorder {
            db,
            failures,
            calls: AtomicU32::new(0),
            handled: AtomicU32::new(0),
        }
    }

    async fn record(&self, event: &Envelope, call: u32) -> Result<(), HandlerError> {
        if call <= self.failures {
            return Err(HandlerError::new(format!("failure number {call}")));
        }
        let mut tx = self.db.begin().await?;
        if !inbox::record(&mut tx, "probe", event.id).await? {
            tx.rollback().await?;
            return Ok(());
        }
        sql("INSERT INTO effects (event_id) VALUES ($1)")
            .bind(event.id)
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl Handler for Recorder {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let result = self.record(event, call).await;
        self.handled.fetch_add(1, Ordering::SeqCst);
        result
    }
}

struct Rig {
    backend: Backend,
    namespace: String,
    db: Db,
    bus: Arc<dyn EventBus>,
    trigger: ShutdownTrigger,
    recorder: Arc<Recorder>,
    leftovers: support::Leftovers,
}

async fn rig(backend: Backend, failures: u32) -> Rig {
    rig_with(backend, failures, Some(outbox::RelaySettings::default())).await
}

/// A rig whose relay paces itself by `relay`, or that has none when `None`.
async fn rig_with(backend: Backend, failures: u32, relay: Option<outbox::RelaySettings>) -> Rig {
    match backend {
        Backend::Embedded => {}
        Backend::Distributed => {
            support::require(Service::PostgreSql);
            support::require(Service::RabbitMq);
        }
        Backend::Kafka => {
            support::require(Service::PostgreSql);
            support::require(Service::Kafka);
        }
    }
    let namespace = unique("m");
    let mut leftovers = support::Leftovers::namespace(backend, &namespace);
    let file = std::env::temp_dir().join(format!("kassa-{namespace}.db"));
    leftovers.consumer("probe").retry(QUICK);
    for suffix in ["", "-wal", "-shm"] {
        leftovers.file(format!("{}{suffix}", file.display()).into());
    }
    let location = match backend {
        Backend::Embedded => DbLocation::Sqlite { path: file },
        Backend::Distributed | Backend::Kafka => DbLocation::Postgres {
            url: support::settings_db_url(&namespace),
            max_connections: 4,
        },
    };
    let db = Db::connect(&location).await.unwrap();
    migrate::run(&db, &[&migrate::PLATFORM]).await.unwrap();
    let effects = match backend {
        Backend::Embedded => "CREATE TABLE effects (event_id BLOB NOT NULL)",
        Backend::Distributed | Backend::Kafka => "CREATE TABLE effects (event_id UUID NOT NULL)",
    };
    sql(effects).execute(&db).await.unwrap();
    let (trigger, shutdown) = shutdown::channel();
    let policy = QUICK;
    let bus: Arc<dyn EventBus> = match backend {
        Backend::Embedded => Arc::new(MemoryBus::new(policy, shutdown.clone())),
        Backend::Distributed => Arc::new(RabbitBus::new(
            AMQP_URL,
            &namespace,
            vec![QueueSpec {
                consumer: "probe".into(),
                topics: vec![Probe::TYPE.into()],
            }],
            policy,
            16,
            shutdown.clone(),
        )),
        Backend::Kafka => kafka_bus(&namespace, policy, shutdown.clone()),
    };
    let recorder = Arc::new(Recorder::new(db.clone(), failures));
    bus.subscribe(Subscription {
        consumer: "probe".into(),
        topics: vec![Probe::TYPE.into()],
        handler: recorder.clone(),
        db: db.clone(),
    })
    .await
    .unwrap();
    if let Some(relay) = relay {
        tokio::spawn(outbox::relay(
            "probe",
            db.clone(),
            bus.clone(),
            relay,
            shutdown,
        ));
    }
    Rig {
        backend,
        namespace,
        db,
        bus,
        trigger,
        recorder,
        leftovers,
    }
}

impl Rig {
    async fn effects(&self) -> i64 {
        count_effects(&self.db).await
    }

    async fn dead_letters(&self) -> Vec<kassa_platform::bus::DeadLetter> {
        match self.backend {
            Backend::Embedded => memory::list_dead_letters(&self.db).await.unwrap(),
            Backend::Distributed => {
                rabbit::list_dead_letters(AMQP_URL, &self.namespace, &["probe"])
                    .await
                    .unwrap()
            }
            Backend::Kafka => kafka_dead_letters(&self.namespace).await,
        }
    }

    async fn redrive(&self) -> usize {
        match self.backend {
            Backend::Embedded => memory::redrive_dead_letters(&self.db).await.unwrap(),
            Backend::Distributed => {
                rabbit::redrive_dead_letters(AMQP_URL, &self.namespace, "probe")
                    .await
                    .unwrap()
            }
            Backend::Kafka => kafka_redrive(&self.namespace).await,
        }
    }

    async fn stop(self) {
        self.trigger.trigger();
        self.bus.drain().await;
        self.db.close().await;
        let mut leftovers = self.leftovers;
        leftovers.remove().await;
    }
}

#[cfg(feature = "kafka")]
fn kafka_settings() -> kassa_platform::bus::kafka::KafkaSettings {
    match support::broker(Backend::Kafka) {
        kassa::Broker::Kafka(k) => k,
        kassa::Broker::RabbitMq { .. } => unreachable!("the Kafka backend"),
    }
}

#[cfg(feature = "kafka")]
fn kafka_bus(
    namespace: &str,
    policy: RetryPolicy,
    shutdown: shutdown::Shutdown,
) -> Arc<dyn EventBus> {
    Arc::new(
        kassa_platform::bus::kafka::KafkaBus::new(
            kafka_settings(),
            namespace,
            vec![QueueSpec {
                consumer: "probe".into(),
                topics: vec![Probe::TYPE.into()],
            }],
            policy,
            16,
            shutdown,
        )
        .unwrap(),
    )
}

#[cfg(feature = "kafka")]
async fn kafka_dead_letters(namespace: &str) -> Vec<kassa_platform::bus::DeadLetter> {
    kassa_platform::bus::kafka::list_dead_letters(
        &kafka_settings(),
        namespace,
        &[("probe", &[Probe::TYPE])],
    )
    .await
    .unwrap()
}

#[cfg(feature = "kafka")]
async fn kafka_redrive(namespace: &str) -> usize {
    kassa_platform::bus::kafka::redrive_dead_letters(
        &kafka_settings(),
        namespace,
        "probe",
        &[Probe::TYPE],
    )
    .await
    .unwrap()
}

#[cfg(not(feature = "kafka"))]
fn kafka_bus(_: &str, _: RetryPolicy, _: shutdown::Shutdown) -> Arc<dyn EventBus> {
    unreachable!("Kafka tests are generated only with the kafka feature")
}

#[cfg(not(feature = "kafka"))]
async fn kafka_dead_letters(_: &str) -> Vec<kassa_platform::bus::DeadLetter> {
    unreachable!("Kafka tests are generated only with the kafka feature")
}

#[cfg(not(feature = "kafka"))]
async fn kafka_redrive(_: &str) -> usize {
    unreachable!("Kafka tests are generated only with the kafka feature")
}

fn probe(n: u32) -> Envelope {
    Envelope::new("test", n, &Probe { n }, &EventContext::new("corr"))
}

on_both_backends!(
    outbox_publishes_only_what_was_committed,
    redelivery_has_no_second_effect,
    failures_are_retried_then_dead_lettered_and_redriven,
    a_transient_failure_is_retried_to_success,
    housekeeping_sweeps_only_what_expired,
    an_event_after_a_quiet_spell_is_published_on_its_commit
);

async fn outbox_publishes_only_what_was_committed(backend: Backend) {
    let rig = rig(backend, 0).await;
    let mut tx = rig.db.begin().await.unwrap();
    outbox::add(&mut tx, &probe(1)).await.unwrap();
    tx.rollback().await.unwrap();
    let mut tx = rig.db.begin().await.unwrap();
    for n in 2..12 {
        outbox::add(&mut tx, &probe(n)).await.unwrap();
    }
    tx.commit().await.unwrap();
    eventually(
        "ten effects",
        PATIENCE,
        async || rig.effects().await,
        |n| *n == 10,
    )
    .await;
    eventually(
        "an empty outbox",
        PATIENCE,
        async || outbox::pending(&rig.db).await.unwrap(),
        |n| *n == 0,
    )
    .await;
    // The relay publishes in the order events were written: once an event written after all
    // the others has its effect, anything the rolled-back transaction left would have had its.
    let mut tx = rig.db.begin().await.unwrap();
    outbox::add(&mut tx, &probe(12)).await.unwrap();
    tx.commit().await.unwrap();
    let effects = eventually(
        "the later event's effect",
        PATIENCE,
        async || rig.effects().await,
        |n| *n >= 11,
    )
    .await;
    assert_eq!(effects, 11, "the rolled-back event must never be published");
    rig.stop().await;
}

async fn redelivery_has_no_second_effect(backend: Backend) {
    let rig = rig(backend, 0).await;
    let event = probe(7);
    let message = Message {
        id: event.id,
        topic: event.event_type.clone(),
        body: event.to_bytes(),
    };
    for _ in 0..3 {
        rig.bus.publish(&message).await.unwrap();
    }
    // Deliveries handled to their end: one that has merely begun may not have committed yet.
    eventually(
        "three deliveries handled",
        PATIENCE,
        async || rig.recorder.handled.load(Ordering::SeqCst),
        |n| *n == 3,
    )
    .await;
    let effects = eventually(
        "the effect",
        PATIENCE,
        async || rig.effects().await,
        |n| *n >= 1,
    )
    .await;
    assert_eq!(effects, 1, "three deliveries of one event, one effect");
    rig.stop().await;
}

async fn failures_are_retried_then_dead_lettered_and_redriven(backend: Backend) {
    let rig = rig(backend, 3).await;
    let event = probe(9);
    let mut tx = rig.db.begin().await.unwrap();
    outbox::add(&mut tx, &event).await.unwrap();
    tx.commit().await.unwrap();
    let letters = eventually(
        "a dead letter",
        PATIENCE,
        async || rig.dead_letters().await,
        |letters| !letters.is_empty(),
    )
    .await;
    // Exactly the configured attempts (the last of them dead-lettered the event).
    assert_eq!(rig.recorder.calls.load(Ordering::SeqCst), 3);
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].attempts, 3);
    assert_eq!(letters[0].topic, Probe::TYPE);
    assert!(
        letters[0].error.contains("failure number 3"),
        "{:?}",
        letters[0]
    );
    assert_eq!(rig.effects().await, 0);
    // The handler works now (its failures are used up): a redrive delivers the event once.
    assert_eq!(rig.redrive().await, 1);
    eventually(
        "the redriven effect",
        PATIENCE,
        async || rig.effects().await,
        |n| *n == 1,
    )
    .await;
    assert!(rig.dead_letters().await.is_empty());
    // Nothing called the handler between the dead letter and the redrive: no hot loop.
    assert_eq!(
        rig.recorder.calls.load(Ordering::SeqCst),
        4,
        "three attempts, then the redriven one"
    );
    rig.stop().await;
}

async fn a_transient_failure_is_retried_to_success(backend: Backend) {
    let rig = rig(backend, 2).await;
    let mut tx = rig.db.begin().await.unwrap();
    outbox::add(&mut tx, &probe(3)).await.unwrap();
    tx.commit().await.unwrap();
    eventually(
        "the effect after two failures",
        PATIENCE,
        async || rig.effects().await,
        |n| *n == 1,
    )
    .await;
    assert_eq!(rig.recorder.calls.load(Ordering::SeqCst), 3);
    assert!(rig.dead_letters().await.is_empty());
    rig.stop().await;
}

async fn housekeeping_sweeps_only_what_expired(backend: Backend) {
    let rig = rig(backend, 0).await;
    let old = chrono::Utc::now() - chrono::Duration::days(8);
    let fresh = chrono::Utc::now();
    for (key, at) in [("old", old), ("fresh", fresh)] {
        sql("INSERT INTO idempotency_keys (scope, key, request_hash, created_at) VALUES ('s', $1, 'h', $2)").bind(key).bind(at).execute(&rig.db).await.unwrap();
        sql("INSERT INTO inbox (consumer, event_id, handled_at) VALUES ('c', $1, $2)")
            .bind(uuid::Uuid::now_v7())
            .bind(at)
            .execute(&rig.db)
            .await
            .unwrap();
    }
    assert_eq!(
        kassa_platform::housekeeping::sweep(&rig.db).await.unwrap(),
        2
    );
    let keys: Vec<String> = sql("SELECT key FROM idempotency_keys")
        .fetch_all(&rig.db)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("key").unwrap())
        .collect();
    assert_eq!(keys, vec!["fresh".to_owned()]);
    let inbox: i64 = sql("SELECT COUNT(*) AS n FROM inbox")
        .fetch_one(&rig.db)
        .await
        .unwrap()
        .get("n")
        .unwrap();
    assert_eq!(inbox, 1);
    rig.stop().await;
}

/// Commits `events` in one transaction.
/// A commit after the relay has been idle longer than its sweep interval is published at once,
/// not at the next poll: the wake-up its commit gives is not spent on a sweep below the cursor
/// alone. (`kassa up` once delivered one event per service and then nothing until a restart.)
async fn an_event_after_a_quiet_spell_is_published_on_its_commit(backend: Backend) {
    let relay = outbox::RelaySettings {
        // Only the commits' wake-ups and the sweeps can find a row within the test's patience.
        poll: Duration::from_secs(600),
        sweep_every: Duration::from_millis(100),
        ..Default::default()
    };
    let rig = rig_with(backend, 0, Some(relay)).await;
    for n in 1..=4 {
        commit(&rig.db, [n]).await;
        eventually(
            &format!("event {n}'s effect"),
            PATIENCE,
            async || rig.effects().await,
            |e| *e == i64::from(n),
        )
        .await;
        // The quiet spell is the scenario: several sweep intervals with nothing written.
        tokio::time::sleep(Duration::from_millis(350)).await;
    }
    rig.stop().await;
}

async fn commit(db: &Db, events: impl IntoIterator<Item = u32>) {
    let mut tx = db.begin().await.unwrap();
    for n in events {
        outbox::add(&mut tx, &probe(n)).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// A relay of its own over `rig`'s database, as another process would run: its own connections
/// and stop signal.
async fn another_relay(rig: &Rig) -> (Db, tokio::task::JoinHandle<()>) {
    let db = Db::connect(&DbLocation::Postgres {
        url: support::settings_db_url(&rig.namespace),
        max_connections: 2,
    })
    .await
    .unwrap();
    let (trigger, shutdown) = shutdown::channel();
    let relay = tokio::spawn({
        let (db, bus) = (db.clone(), rig.bus.clone());
        async move {
            outbox::relay("probe", db, bus, Default::default(), shutdown).await;
            drop(trigger);
        }
    });
    (db, relay)
}

/// Two processes relaying one outbox: one publishes, so nothing goes out twice; when it dies
/// (its connection with it), the other takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_relay_publishes_and_another_takes_over_when_it_dies() {
    let rig = rig_with(Backend::Distributed, 0, None).await;
    let (first_db, first) = another_relay(&rig).await;
    commit(&rig.db, 1..=100).await;
    let wait_for = async |n: i64| {
        eventually(
            &format!("{n} effects"),
            PATIENCE,
            async || rig.effects().await,
            |e| *e == n,
        )
        .await;
        eventually(
            "an empty outbox",
            PATIENCE,
            async || outbox::pending(&rig.db).await.unwrap(),
            |p| *p == 0,
        )
        .await;
    };
    wait_for(100).await;
    let (second_db, second) = another_relay(&rig).await;
    for chunk in 0..10 {
        commit(&rig.db, 101 + chunk * 10..111 + chunk * 10).await;
    }
    wait_for(200).await;
    assert_eq!(
        rig.recorder.calls.load(Ordering::SeqCst),
        200,
        "while one relay leads, the other publishes nothing"
    );
    // The leader dies as a killed process would: its task and connections gone at once.
    first.abort();
    let _ = first.await;
    first_db.close().await;
    commit(&rig.db, 201..=300).await;
    wait_for(300).await;
    assert_eq!(rig.recorder.calls.load(Ordering::SeqCst), 300);
    second.abort();
    let _ = second.await;
    second_db.close().await;
    rig.stop().await;
}

/// A transaction that took its outbox sequence number before others committed, and commits
/// after them (soon, or after the relay stopped looking for the gap), is still published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_committed_after_later_ones_is_still_published() {
    let relay = outbox::RelaySettings {
        gap_wait: Duration::from_millis(200),
        sweep_every: Duration::from_millis(300),
        ..Default::default()
    };
    let rig = rig_with(Backend::Distributed, 0, Some(relay)).await;
    for hold in [Duration::from_millis(50), Duration::from_millis(800)] {
        let before = rig.effects().await;
        let mut slow = rig.db.begin().await.unwrap();
        outbox::add(&mut slow, &probe(1)).await.unwrap();
        commit(&rig.db, [2, 3]).await;
        eventually(
            "the later events' effects",
            PATIENCE,
            async || rig.effects().await,
            |n| *n == before + 2,
        )
        .await;
        // Holding the transaction open is the scenario itself, not a wait for a result.
        tokio::time::sleep(hold).await;
        commit(&rig.db, [4]).await;
        slow.commit().await.unwrap();
        eventually(
            "the late event's effect",
            PATIENCE,
            async || rig.effects().await,
            |n| *n == before + 4,
        )
        .await;
    }
    assert_eq!(rig.recorder.calls.load(Ordering::SeqCst), 8);
    rig.stop().await;
}

/// The relay vacuums the outbox as it deletes from it, whether or not autovacuum runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_vacuums_the_outbox_it_churns() {
    let relay = outbox::RelaySettings {
        vacuum_after: 50,
        ..Default::default()
    };
    let rig = rig_with(Backend::Distributed, 0, Some(relay)).await;
    let vacuums = async || -> i64 {
        sql("SELECT vacuum_count AS n FROM pg_stat_user_tables WHERE relname = 'outbox'")
            .fetch_one(&rig.db)
            .await
            .unwrap()
            .get("n")
            .unwrap()
    };
    let before = vacuums().await;
    commit(&rig.db, 1..=120).await;
    eventually(
        "120 effects",
        PATIENCE,
        async || rig.effects().await,
        |n| *n == 120,
    )
    .await;
    eventually("a vacuum of the outbox", PATIENCE, vacuums, |n| *n > before).await;
    rig.stop().await;
}

/// Three attempts, quickly.
const QUICK: RetryPolicy = RetryPolicy {
    max_attempts: 3,
    base_delay: Duration::from_millis(30),
};

async fn count_effects(db: &Db) -> i64 {
    sql("SELECT COUNT(*) AS n FROM effects")
        .fetch_one(db)
        .await
        .unwrap()
        .get("n")
        .unwrap()
}

/// A namespace and its PostgreSQL database (the platform's tables and `effects`), for a test of
/// RabbitMQ itself.
async fn rabbitmq_and_effects() -> (String, Db) {
    support::require(Service::PostgreSql);
    support::require(Service::RabbitMq);
    let namespace = unique("m");
    let db = Db::connect(&DbLocation::Postgres {
        url: support::settings_db_url(&namespace),
        max_connections: 4,
    })
    .await
    .unwrap();
    migrate::run(&db, &[&migrate::PLATFORM]).await.unwrap();
    sql("CREATE TABLE effects (event_id UUID NOT NULL)")
        .execute(&db)
        .await
        .unwrap();
    (namespace, db)
}

/// Takes batches in one transaction, but refuses any batch holding event 13, as a batch with one
/// bad event in it would fail.
struct Batcher {
    inner: Recorder,
    batches: AtomicU32,
}

#[async_trait]
impl Handler for Batcher {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError> {
        self.inner.handle(event).await
    }

    async fn handle_batch(&self, events: &[Envelope]) -> Result<(), HandlerError> {
        self.batches.fetch_add(1, Ordering::SeqCst);
        if events.iter().any(|e| e.subject == "13") {
            return Err(HandlerError::new("a batch with 13 in it"));
        }
        let mut tx = self.inner.db.begin().await?;
        for event in events {
            if inbox::record(&mut tx, "probe", event.id).await? {
                sql("INSERT INTO effects (event_id) VALUES ($1)")
                    .bind(event.id)
                    .execute(&mut tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_batches_deliveries_and_falls_back_to_one_by_one() {
    let (namespace, db) = rabbitmq_and_effects().await;
    let (trigger, shutdown) = shutdown::channel();
    let policy = QUICK;
    let bus = Arc::new(RabbitBus::new(
        AMQP_URL,
        &namespace,
        vec![QueueSpec {
            consumer: "probe".into(),
            topics: vec![Probe::TYPE.into()],
        }],
        policy,
        64,
        shutdown.clone(),
    ));
    bus.ready().await.unwrap();
    // Fill the queue before anyone consumes it, so deliveries arrive together.
    for n in 0..40 {
        let event = probe(n);
        bus.publish(&Message {
            id: event.id,
            topic: event.event_type.clone(),
            body: event.to_bytes(),
        })
        .await
        .unwrap();
    }
    let batcher = Arc::new(Batcher {
        inner: Recorder::new(db.clone(), 0),
        batches: AtomicU32::new(0),
    });
    bus.subscribe(Subscription {
        consumer: "probe".into(),
        topics: vec![Probe::TYPE.into()],
        handler: batcher.clone(),
        db: db.clone(),
    })
    .await
    .unwrap();
    let effects = async || count_effects(&db).await;
    eventually("40 effects", PATIENCE, effects, |n| *n == 40).await;
    // A delivery queued after all the others: once it has its effect, a second delivery of any
    // of the 40 would have had its too.
    let later = probe(40);
    bus.publish(&Message {
        id: later.id,
        topic: later.event_type.clone(),
        body: later.to_bytes(),
    })
    .await
    .unwrap();
    let n = eventually("the later event's effect", PATIENCE, effects, |n| *n >= 41).await;
    assert_eq!(n, 41, "every event once, none twice");
    assert!(
        batcher.batches.load(Ordering::SeqCst) >= 1,
        "deliveries that arrive together are batched"
    );
    assert!(
        batcher.inner.calls.load(Ordering::SeqCst) >= 1,
        "the batch with 13 in it fell back to one by one"
    );
    trigger.trigger();
    bus.drain().await;
    db.close().await;
    support::drop_database(&format!("{namespace}_probe")).await;
    support::delete_named_queues(&namespace, &["probe"], &policy).await;
}

/// Takes batches in one transaction; event 13 fails, alone or in a batch, while it is poisoned.
struct Poisoned {
    inner: Recorder,
    poisoned: std::sync::atomic::AtomicBool,
    batches: AtomicU32,
}

impl Poisoned {
    fn refuses(&self, event: &Envelope) -> bool {
        event.subject == "13" && self.poisoned.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Handler for Poisoned {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError> {
        if self.refuses(event) {
            self.inner.calls.fetch_add(1, Ordering::SeqCst);
            return Err(HandlerError::new("13 is poisoned"));
        }
        self.inner.handle(event).await
    }

    async fn handle_batch(&self, events: &[Envelope]) -> Result<(), HandlerError> {
        self.batches.fetch_add(1, Ordering::SeqCst);
        if events.iter().any(|e| self.refuses(e)) {
            return Err(HandlerError::new("a batch with 13 in it"));
        }
        kassa_platform::bus::one_by_one(self, events).await
    }
}

/// Messages waiting in `queue`.
async fn depth(queue: &str) -> u32 {
    let conn = lapin::Connection::connect(AMQP_URL, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let q = ch
        .queue_declare(
            queue.into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    let _ = conn.close(200, "bye".into()).await;
    q.message_count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_gives_a_consumer_of_every_event_digests_and_dead_letters_their_events_one_by_one()
{
    let (namespace, db) = rabbitmq_and_effects().await;
    let (trigger, shutdown) = shutdown::channel();
    let policy = QUICK;
    let every = vec!["#".to_string()];
    let bus = Arc::new(RabbitBus::new(
        AMQP_URL,
        &namespace,
        vec![QueueSpec {
            consumer: "probe".into(),
            topics: every.clone(),
        }],
        policy,
        16,
        shutdown.clone(),
    ));
    bus.ready().await.unwrap();
    // Published together, before anyone consumes: the events go in a few digests.
    let events: Vec<Envelope> = (0..40).map(probe).collect();
    let published = futures_util::future::join_all(events.iter().map(|event| {
        let bus = bus.clone();
        async move {
            bus.publish(&Message {
                id: event.id,
                topic: event.event_type.clone(),
                body: event.to_bytes(),
            })
            .await
        }
    }))
    .await;
    assert!(published.iter().all(Result::is_ok), "{published:?}");
    let queued = depth(&format!("{namespace}.probe")).await;
    assert!(
        (1..40).contains(&queued),
        "40 events published together wait as a few digests, not one message each: {queued}"
    );
    let handler = Arc::new(Poisoned {
        inner: Recorder::new(db.clone(), 0),
        poisoned: true.into(),
        batches: AtomicU32::new(0),
    });
    bus.subscribe(Subscription {
        consumer: "probe".into(),
        topics: every,
        handler: handler.clone(),
        db: db.clone(),
    })
    .await
    .unwrap();
    let effects = async || count_effects(&db).await;
    eventually("39 effects", PATIENCE, effects, |n| *n == 39).await;
    // Event 13 alone went to the retry queue, then to the dead-letter queue, as itself.
    let letters = eventually(
        "event 13 dead-lettered",
        PATIENCE,
        async || {
            rabbit::list_dead_letters(AMQP_URL, &namespace, &["probe"])
                .await
                .unwrap()
        },
        |letters| !letters.is_empty(),
    )
    .await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].id, Some(events[13].id));
    assert_eq!(letters[0].topic, Probe::TYPE);
    assert_eq!(letters[0].attempts, 3);
    assert!(letters[0].error.contains("13 is poisoned"), "{letters:?}");
    assert_eq!(
        Envelope::from_bytes(letters[0].body.as_bytes()).unwrap().id,
        events[13].id,
        "the dead letter is the event, not its digest"
    );
    assert!(handler.batches.load(Ordering::SeqCst) >= 1);
    assert_eq!(effects().await, 39, "every other event once");
    // Cured, and redriven: 13 has its effect, and nothing else has a second one.
    handler.poisoned.store(false, Ordering::SeqCst);
    assert_eq!(
        rabbit::redrive_dead_letters(AMQP_URL, &namespace, "probe")
            .await
            .unwrap(),
        1
    );
    let n = eventually("the 40th effect", PATIENCE, effects, |n| *n >= 40).await;
    assert_eq!(n, 40);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(effects().await, 40, "none twice");
    trigger.trigger();
    bus.drain().await;
    db.close().await;
    support::drop_database(&format!("{namespace}_probe")).await;
    support::delete_named_queues(&namespace, &["probe"], &policy).await;
}
