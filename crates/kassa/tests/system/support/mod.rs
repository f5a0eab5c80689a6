//! The test harness: starts kassa in this process on ports the system picks (port 0, the
//! address read back) against real infrastructure, either embedded (SQLite files in a fresh
//! folder) or distributed (PostgreSQL, RabbitMQ and Redis on this machine, under a namespace of
//! its own), and cleans up after itself. Tests wait for facts ([`eventually`]), never for time,
//! and a test whose infrastructure is not running fails with one line saying which
//! ([`require`]).

#![allow(dead_code)]

pub mod servers;

use std::{
    fmt::Debug,
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    sync::OnceLock,
    time::Duration,
};

use kassa::{Infrastructure, Running, Settings, registry};
use kassa_platform::{auth::Role, bus::RetryPolicy};
use serde_json::{Value, json};

pub const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379/";
/// The Kafka-protocol broker `scripts/test` starts (tansu, in memory).
pub const KAFKA_BROKERS: &str = "127.0.0.1:9092";

/// A piece of infrastructure the distributed tests use on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    PostgreSql,
    RabbitMq,
    Redis,
    Kafka,
}

impl Service {
    pub const ALL: [Service; 3] = [Service::PostgreSql, Service::RabbitMq, Service::Redis];

    pub fn name(self) -> &'static str {
        match self {
            Service::PostgreSql => "PostgreSQL",
            Service::RabbitMq => "RabbitMQ",
            Service::Redis => "Redis",
            Service::Kafka => "Kafka",
        }
    }

    /// Where [`PG_URL`], [`AMQP_URL`] and [`REDIS_URL`] point.
    pub fn addr(self) -> &'static str {
        match self {
            Service::PostgreSql => "127.0.0.1:5432",
            Service::RabbitMq => "127.0.0.1:5672",
            Service::Redis => "127.0.0.1:6379",
            Service::Kafka => KAFKA_BROKERS,
        }
    }
}

/// Fails the test with one line naming `service` unless it accepts connections; asked once per
/// test binary.
pub fn require(service: Service) {
    static ANSWERS: [OnceLock<Result<(), String>>; 4] = [const { OnceLock::new() }; 4];
    let answer = ANSWERS[service as usize].get_or_init(|| reachable(service, service.addr()));
    if let Err(line) = answer {
        panic!("{line}");
    }
}

/// [`require`] for everything the distributed backend runs on.
pub fn require_distributed() {
    for service in Service::ALL {
        require(service);
    }
}

/// Whether `service` accepts connections at `addr`, or the line that says it does not.
pub fn reachable(service: Service, addr: &str) -> Result<(), String> {
    let unreachable = || {
        format!(
            "{} is not reachable at {addr}: start it (scripts/test does)",
            service.name()
        )
    };
    let addr: SocketAddr = addr.parse().map_err(|_| unreachable())?;
    TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map(drop)
        .map_err(|_| unreachable())
}

pub use kassa_platform::testing::eventually;

/// The sum of a metric's series whose labels include `labels`, in the Prometheus text `text`
/// (0 when there are none: a counter nobody has incremented is not rendered).
pub fn metric_in(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(series, _)| {
            let (series_name, series_labels) = series.split_once('{').unwrap_or((series, ""));
            series_name == name
                && labels
                    .iter()
                    .all(|(k, v)| series_labels.contains(&format!(r#"{k}="{v}""#)))
        })
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        .sum()
}

/// A metric as the service at `base` shows it on `/metrics` (see [`metric_in`]).
pub async fn metric(
    client: &reqwest::Client,
    base: &str,
    name: &str,
    labels: &[(&str, &str)],
) -> f64 {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("/metrics answers")
        .text()
        .await
        .expect("/metrics has a body");
    metric_in(&text, name, labels)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    /// PostgreSQL, RabbitMQ and Redis.
    Distributed,
    /// PostgreSQL, Kafka and Redis.
    Kafka,
}

impl Backend {
    /// Whether the services run on PostgreSQL, a broker and Redis.
    pub fn is_distributed(self) -> bool {
        self != Backend::Embedded
    }
}

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// The installation's token secret in tests.
pub const TOKEN_SECRET: &str = "the kassa tests' token secret, 32 bytes or more";

/// Settings for a test: ports the system picks, fast retries, a namespace and folder of its own.
pub fn test_settings(backend: Backend, namespace: &str) -> Settings {
    let data_dir = std::env::temp_dir().join(format!("kassa-test-{namespace}"));
    let mut s = Settings::embedded(data_dir.clone());
    s.namespace = namespace.to_owned();
    for port in s.ports.values_mut() {
        *port = 0;
    }
    s.retry = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(20),
    };
    s.relay.poll = Duration::from_millis(50);
    s.http.tokens = Some(kassa_platform::auth::Secret::new(TOKEN_SECRET).expect("long enough"));
    // Emails, when no mail server is given, go beside the test's data.
    s.options
        .set("mail-dir", data_dir.join("mail").display().to_string());
    if backend.is_distributed() {
        s.infrastructure = Infrastructure::Distributed {
            database_url: PG_URL.into(),
            database_overrides: Default::default(),
            broker: broker(backend),
            redis_url: REDIS_URL.into(),
            max_connections: 4,
            prefetch: 64,
        };
    }
    s
}

pub struct TestApp {
    pub backend: Backend,
    pub namespace: String,
    pub gateway: String,
    pub orders: String,
    pub payments: String,
    /// A client that shows an admin's API key (`X-Api-Key`) unless a request shows a token of
    /// its own: the operator's view, for scenarios about what the system does.
    pub client: reqwest::Client,
    /// A client that shows no credential at all.
    pub anon: reqwest::Client,
    /// The admin key `client` shows.
    pub admin_key: String,
    pub settings: Settings,
    running: Option<Running>,
    /// Removes the app's databases, queues, topics and folder when the test ends, passed or
    /// failed.
    leftovers: Leftovers,
}

/// Every service of the registry, for scenarios that exercise them all.
pub const ALL: &[&str] = &[
    "gateway",
    "orders",
    "payments",
    "classes",
    "members",
    "personnel",
    "users",
    "notifications",
    "catalog",
    "inventory",
    "qr",
    "analytics",
];

#[test]
fn all_names_every_service_of_the_registry() {
    assert_eq!(ALL, registry::names());
}

/// Starts `services` (names from the registry) on `backend`, each on a port the system picks.
pub async fn spawn_app(backend: Backend, services: &[&str]) -> TestApp {
    spawn_app_with(backend, services, |_| {}).await
}

/// [`spawn_app`] with settings adjusted first. A scenario starts only the services it exercises
/// (and those they call or hear from): a service that is not started is not there, as in a
/// deployment where it is down.
pub async fn spawn_app_with(
    backend: Backend,
    services: &[&str],
    adjust: impl FnOnce(&mut Settings),
) -> TestApp {
    let mut services: Vec<&'static kassa_platform::service::Service> = services
        .iter()
        .map(|name| registry::find(name).unwrap_or_else(|| panic!("no service {name}")))
        .collect();
    // The users service tells every other who an API key is: the test's own key included.
    if !services.iter().any(|s| s.name == "users") {
        services.push(&kassa_users::SERVICE);
    }
    require_backend(backend);
    let namespace = unique("t");
    let mut settings = test_settings(backend, &namespace);
    adjust(&mut settings);
    let leftovers = Leftovers::of(backend, &namespace, &settings);
    if let Infrastructure::Distributed {
        database_overrides, ..
    } = &settings.infrastructure
    {
        // Each service's database a copy of a migrated template, all at once.
        let namespace = &settings.namespace;
        let copies = services
            .iter()
            .filter(|service| service.has_storage())
            .filter(|service| !database_overrides.contains_key(service.name))
            .filter_map(|service| {
                let migrations = service.migrations?;
                let name = format!("{namespace}_{}", service.name);
                Some(async move {
                    kassa_platform::testing::database_from_template(
                        &name,
                        &[&kassa_platform::migrate::PLATFORM, migrations],
                    )
                    .await
                })
            });
        futures_util::future::join_all(copies).await;
    }
    let running = kassa::start(settings.clone(), &services)
        .await
        .expect("kassa starts");
    // Empty for a service this app does not run.
    let url = |name: &str| {
        running
            .addrs
            .get(name)
            .map(|addr| format!("http://{addr}"))
            .unwrap_or_default()
    };
    let admin_key = key_in(&settings, Role::Admin, "tests").await;
    TestApp {
        backend,
        gateway: url("gateway"),
        orders: url("orders"),
        payments: url("payments"),
        namespace,
        client: client_with_key(&admin_key),
        anon: http_client(),
        admin_key,
        settings,
        running: Some(running),
        leftovers,
    }
}

pub const USER: &str = "d55fa6d6-63c2-4633-aeaf-ecf0c80fb48f";

impl TestApp {
    pub async fn post_json(
        &self,
        path: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut req = self
            .client
            .post(format!("{}{path}", self.gateway))
            .header("content-type", "application/json")
            .body(body.to_owned());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.expect("request sent");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn place_order(&self, total: &str) -> String {
        let (status, body) = self
            .post_json(
                "/api/orders",
                &format!(r#"{{"userId":"{USER}","total":{total}}}"#),
                &[],
            )
            .await;
        assert_eq!(status, 202, "{body}");
        body["orderId"].as_str().expect("orderId").to_owned()
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.get_from(&self.gateway, path).await
    }

    pub async fn get_from(&self, base: &str, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("request sent");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn patch(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.client.patch(format!("{}{path}", self.gateway));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("request sent");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Waits until the order's status is one of `wanted`, and returns the order.
    pub async fn order_reaches(&self, id: &str, wanted: &[&str]) -> Value {
        self.wait_for(&format!("/api/orders/{id}"), |v| {
            wanted.contains(&v["status"].as_str().unwrap_or(""))
        })
        .await
    }

    pub async fn payment_of(&self, order_id: &str, wanted: &[&str]) -> Value {
        self.wait_for(&format!("/api/payments/order/{order_id}"), |v| {
            wanted.contains(&v["status"].as_str().unwrap_or(""))
        })
        .await
    }

    /// Polls `path` until `done` holds (10 s at most).
    pub async fn wait_for(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let answer = eventually(
            &format!("GET {path}"),
            Duration::from_secs(10),
            async || {
                let (status, body) = self.get(path).await;
                json!({ "status": status, "body": body })
            },
            |answer| answer["status"] == 200 && done(&answer["body"]),
        )
        .await;
        answer["body"].clone()
    }

    /// A metric as `/metrics` of the service at `base` shows it. The recorder is the process's:
    /// apps started in one test binary share it, so compare before and after rather than
    /// expecting a number.
    pub async fn metric(&self, base: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric(&self.client, base, name, labels).await
    }

    pub async fn count_orders(&self) -> i64 {
        self.get("/api/orders?limit=1").await.1["meta"]["total"]
            .as_i64()
            .expect("total")
    }

    pub async fn count_payments(&self) -> i64 {
        self.get("/api/payments?limit=1").await.1["meta"]["total"]
            .as_i64()
            .expect("total")
    }

    /// Signs up and in as a new customer, saves `card`, and answers the token.
    pub async fn customer_with_card(&self, card: &str) -> String {
        self.customer_with_card_as(card).await.0
    }

    /// [`Self::customer_with_card`], also answering the customer's address.
    pub async fn customer_with_card_as(&self, card: &str) -> (String, String) {
        let (gw, c) = (&self.gateway, &self.client);
        let (token, email) = signed_up(c, gw).await;
        let saved = post_with(
        c,
        &format!("{gw}/api/payment-methods/add"),
        &[("authorization", &format!("Bearer {token}"))],
        serde_json::json!({"card_number": card, "expiry_date": "12/34", "cvc": "123", "cardholder_name": "A Customer"}),
    )
    .await;
        let status = saved.status();
        assert_eq!(
            status,
            reqwest::StatusCode::CREATED,
            "{}",
            saved.text().await.unwrap_or_default()
        );
        (token, email)
    }

    /// Places an order as seed 004's clients do and waits for its status to leave `pending`.
    pub async fn order_settles(&self, token: &str) -> (String, String) {
        let (gw, c) = (&self.gateway, &self.client);
        let created = post_with(
            c,
            &format!("{gw}/api/order/create"),
            &[("cookie", &format!("token={token}"))],
            serde_json::json!({"item": "Margherita", "amount": 12.5}),
        )
        .await;
        assert_eq!(created.status(), reqwest::StatusCode::CREATED);
        let body: Value = created.json().await.unwrap();
        assert_eq!(body["message"], "Order created successfully");
        assert_eq!(body["data"]["status"], "pending");
        let id = body["data"]["orderId"].as_str().unwrap().to_owned();
        let status = eventually(
            "the order's payment settles",
            std::time::Duration::from_secs(20),
            async || {
                let answer: Value = c
                    .get(format!("{gw}/api/order/status/{id}"))
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                answer["data"]["status"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            },
            |s| s != "pending",
        )
        .await;
        (id, status)
    }

    /// `http://host:port` of a service this app runs.
    pub fn url_of(&self, service: &str) -> String {
        let running = self.running.as_ref().expect("running");
        format!("http://{}", running.addrs[service])
    }

    /// The bus of the running services.
    pub fn bus(&self) -> std::sync::Arc<dyn kassa_platform::bus::EventBus> {
        self.running.as_ref().expect("running").bus()
    }

    /// Stops kassa and removes what the test created.
    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            // Every scenario holds the process to a graceful stop: background work that does
            // not end when asked would hold a real `kassa up` for 15 s on Ctrl-C.
            assert_eq!(
                r.stop().await,
                kassa::Stopped::Cleanly,
                "kassa stops cleanly"
            );
        }
        self.leftovers.remove().await;
    }

    /// The guard that removes what this app's test made; a test that makes more under the
    /// namespace (a consumer of its own) names it here.
    pub fn leftovers(&mut self) -> &mut Leftovers {
        &mut self.leftovers
    }
}

/// What a test made under its namespace: its data folder, its PostgreSQL databases (every one
/// named `<namespace>_…`), its RabbitMQ queues and exchanges, its Kafka topics. Removed by
/// [`Leftovers::remove`], or when dropped: a test that fails (a panic unwinds through it) leaves
/// nothing behind either.
pub struct Leftovers {
    backend: Backend,
    namespace: String,
    data_dir: Option<PathBuf>,
    /// Consumers whose queues to delete: the registry's, and any a test declared itself.
    consumers: Vec<String>,
    /// The retry policies the queues were declared with (a retry queue is named by its delay).
    retries: Vec<RetryPolicy>,
    files: Vec<PathBuf>,
    removed: bool,
}

impl Leftovers {
    /// What an app started with `settings` under `namespace` will make.
    pub fn of(backend: Backend, namespace: &str, settings: &Settings) -> Leftovers {
        let mut leftovers = Leftovers::namespace(backend, namespace);
        leftovers.data_dir = data_dir_of(settings);
        leftovers.retries = vec![settings.retry];
        leftovers
    }

    /// What anything run under `namespace` on `backend` may make, with any retry policy.
    pub fn namespace(backend: Backend, namespace: &str) -> Leftovers {
        Leftovers {
            backend,
            namespace: namespace.to_owned(),
            data_dir: None,
            consumers: registry::consumers().map(|s| s.name.to_owned()).collect(),
            retries: vec![RetryPolicy::default()],
            files: Vec::new(),
            removed: false,
        }
    }

    /// Also deletes the queues of `consumer` (declared by the test, not by a service).
    pub fn consumer(&mut self, consumer: &str) -> &mut Self {
        self.consumers.push(consumer.to_owned());
        self
    }

    /// Also deletes retry queues declared with `retry`.
    pub fn retry(&mut self, retry: RetryPolicy) -> &mut Self {
        self.retries.push(retry);
        self
    }

    /// Also deletes the folder `dir` and everything in it.
    pub fn folder(&mut self, dir: PathBuf) -> &mut Self {
        self.data_dir = Some(dir);
        self
    }

    /// Also deletes `file`.
    pub fn file(&mut self, file: PathBuf) -> &mut Self {
        self.files.push(file);
        self
    }

    pub async fn remove(&mut self) {
        if std::mem::replace(&mut self.removed, true) {
            return;
        }
        if let Some(dir) = &self.data_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        for file in &self.files {
            let _ = std::fs::remove_file(file);
        }
        if self.backend.is_distributed() {
            drop_databases(&self.namespace).await;
        }
        match self.backend {
            Backend::Embedded => {}
            Backend::Distributed => {
                let consumers: Vec<&str> = self.consumers.iter().map(String::as_str).collect();
                for retry in &self.retries {
                    delete_named_queues(&self.namespace, &consumers, retry).await;
                }
            }
            Backend::Kafka => delete_topics(&self.namespace).await,
        }
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        // Called from inside the test's runtime (or while a panic unwinds through it): remove
        // on a thread with a runtime of its own, and wait for it.
        let mut leftovers = Leftovers {
            backend: self.backend,
            namespace: std::mem::take(&mut self.namespace),
            data_dir: self.data_dir.take(),
            consumers: std::mem::take(&mut self.consumers),
            retries: std::mem::take(&mut self.retries),
            files: std::mem::take(&mut self.files),
            removed: false,
        };
        self.removed = true;
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the clean-up");
            runtime.block_on(leftovers.remove());
        })
        .join();
    }
}

/// The broker settings of a distributed backend.
pub fn broker(backend: Backend) -> kassa::Broker {
    match backend {
        Backend::Kafka => {
            let mut kafka = kassa_platform::bus::kafka::KafkaSettings::new(KAFKA_BROKERS);
            // One broker; few partitions keep a test's topics cheap for it.
            kafka.replication = 1;
            kafka.partitions = 2;
            kassa::Broker::Kafka(kafka)
        }
        _ => kassa::Broker::RabbitMq {
            url: AMQP_URL.into(),
        },
    }
}

/// [`require`] for everything `backend` runs on.
pub fn require_backend(backend: Backend) {
    match backend {
        Backend::Embedded => {}
        Backend::Distributed => require_distributed(),
        Backend::Kafka => {
            require(Service::PostgreSql);
            require(Service::Redis);
            require(Service::Kafka);
        }
    }
}

/// Deletes the Kafka topics of `namespace`.
pub async fn delete_topics(namespace: &str) {
    #[cfg(feature = "kafka")]
    {
        let settings = kassa_platform::bus::kafka::KafkaSettings::new(KAFKA_BROKERS);
        if let Err(e) =
            kassa_platform::bus::kafka::delete_namespace_topics(&settings, namespace).await
        {
            eprintln!("could not delete the topics of {namespace}: {e}");
        }
    }
    #[cfg(not(feature = "kafka"))]
    let _ = namespace;
}

/// The URL of a test database named after `namespace` on the local server.
pub fn settings_db_url(namespace: &str) -> String {
    kassa::settings::with_database(PG_URL, &format!("{namespace}_probe")).expect("url")
}

pub async fn drop_database(name: &str) {
    if let Some(admin) = admin().await {
        drop_each(&admin, &[name.to_owned()]).await;
        admin.close().await;
    }
}

/// Drops every database named `<namespace>_…` on the local server: the services' and any a
/// test made itself.
pub async fn drop_databases(namespace: &str) {
    let Some(admin) = admin().await else {
        return;
    };
    let prefix = format!("{namespace}_");
    let names: Vec<String> = kassa_platform::sql("SELECT datname::text AS name FROM pg_database")
        .fetch_all(&admin)
        .await
        .map(|rows| {
            rows.iter()
                .filter_map(|row| row.get::<String>("name").ok())
                .filter(|name| name.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default();
    drop_each(&admin, &names).await;
    admin.close().await;
}

/// A connection to the local server's `postgres` database, when it answers.
async fn admin() -> Option<kassa_platform::db::Db> {
    kassa_platform::db::Db::connect(&kassa_platform::db::DbLocation::Postgres {
        url: PG_URL.into(),
        max_connections: 1,
    })
    .await
    .ok()
}

async fn drop_each(admin: &kassa_platform::db::Db, names: &[String]) {
    for name in names {
        let _ = kassa_platform::sql_assembled(format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            name.replace('"', "\"\"")
        ))
        .execute(admin)
        .await;
    }
}

pub async fn delete_named_queues(namespace: &str, consumers: &[&str], retry: &RetryPolicy) {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let Ok(conn) =
        lapin::Connection::connect(AMQP_URL, lapin::ConnectionProperties::default()).await
    else {
        return;
    };
    let Ok(ch) = conn.create_channel().await else {
        return;
    };
    for consumer in consumers {
        let mut queues = vec![
            format!("{namespace}.{consumer}"),
            format!("{namespace}.{consumer}.dlq"),
        ];
        for attempt in 1..retry.max_attempts {
            queues.push(format!(
                "{namespace}.{consumer}.retry.{}ms",
                retry.delay_after(attempt).as_millis()
            ));
        }
        for q in queues {
            let _ = ch
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
    }
    for ex in ["events", "digests", "dead"] {
        let _ = ch
            .exchange_delete(
                format!("{namespace}.{ex}").as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await;
    }
    let _ = conn.close(200, "bye".into()).await;
}

/// Generates one test per backend for each scenario `async fn name(backend: Backend)`: embedded,
/// distributed on RabbitMQ and, in a build with the `kafka` feature, distributed on Kafka.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::support::Backend::Embedded).await
                }
            )*
        }
        mod distributed {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::support::Backend::Distributed).await
                }
            )*
        }
        #[cfg(feature = "kafka")]
        mod kafka {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::support::Backend::Kafka).await
                }
            )*
        }
    };
}

pub fn data_dir_of(settings: &Settings) -> Option<PathBuf> {
    match &settings.infrastructure {
        Infrastructure::Embedded { data_dir } => Some(data_dir.clone()),
        _ => None,
    }
}

/// `POST url` with a JSON body and these headers.
pub async fn post_with(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> reqwest::Response {
    let mut req = client.post(url).json(&body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

/// Signs a new customer up through the gateway at `gw`, then in, as seed 004's clients do: the
/// token and the customer's address.
pub async fn signed_up(c: &reqwest::Client, gw: &str) -> (String, String) {
    let email = format!("{}@example.com", unique("c"));
    let password = PASSWORD;
    let up = post_with(
        c,
        &format!("{gw}/api/auth/signup"),
        &[],
        serde_json::json!({"name": "A Customer", "email": email, "password": password}),
    )
    .await;
    assert_eq!(up.status(), reqwest::StatusCode::CREATED);
    (signed_in(c, gw, &email).await, email)
}

/// The password [`signed_up`] gives every account.
pub const PASSWORD: &str = "correct horse battery";

/// A token of the account `email` (made by [`signed_up`]), signed in now: its role is the one
/// the account holds now.
pub async fn signed_in(c: &reqwest::Client, gw: &str, email: &str) -> String {
    let signed: Value = post_with(
        c,
        &format!("{gw}/api/auth/signin"),
        &[],
        serde_json::json!({"email": email, "password": PASSWORD}),
    )
    .await
    .json()
    .await
    .unwrap();
    signed["data"]["token"].as_str().unwrap().to_owned()
}

/// What `GET /api/users/me` answers the holder of `token`.
pub async fn me(c: &reqwest::Client, gw: &str, token: &str) -> Value {
    c.get(format!("{gw}/api/users/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// An HTTP client for the tests (HTTPS-capable, as every client of the process is).
pub fn http_client() -> reqwest::Client {
    kassa_platform::http::https_ready();
    reqwest::Client::new()
}

/// A client that shows `key` (`X-Api-Key`) with every request; a request's own
/// `Authorization` or `token` cookie comes first.
pub fn client_with_key(key: &str) -> reqwest::Client {
    kassa_platform::http::https_ready();
    let mut headers = reqwest::header::HeaderMap::new();
    let mut value = reqwest::header::HeaderValue::from_str(key).expect("a key is ASCII");
    value.set_sensitive(true);
    headers.insert("x-api-key", value);
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("a client")
}

/// The rule of the route `method path` (a path as a client sends it, ids and all), from the
/// services' own declarations.
pub fn rule_for(method: &reqwest::Method, path: &str) -> Option<kassa_platform::access::Rule> {
    route_of(method, path).map(|(_, rule)| rule)
}

/// The service that serves `method path` (a path as a client sends it) and the route's rule.
pub fn route_of(
    method: &reqwest::Method,
    path: &str,
) -> Option<(
    &'static kassa_platform::service::Service,
    kassa_platform::access::Rule,
)> {
    let verb = kassa_platform::access::Verb::of(method)?;
    let path = path.split('?').next().unwrap_or(path);
    let sent: Vec<&str> = path.split('/').collect();
    registry::SERVICES.iter().find_map(|service| {
        service
            .access
            .iter()
            .flat_map(|rules| rules.iter())
            .chain(kassa_platform::access::PLATFORM)
            .find(|rule| {
                let template: Vec<&str> = rule.path.split('/').collect();
                rule.verb == verb
                    && template.len() == sent.len()
                    && template
                        .iter()
                        .zip(&sent)
                        .all(|(t, s)| t == s || (t.starts_with('{') && !s.is_empty()))
            })
            .map(|rule| (*service, *rule))
    })
}

/// A token for user `id` with `role`, signed with the tests' secret as the users service signs
/// them, good for an hour.
pub fn token(id: uuid::Uuid, email: &str, role: Role) -> String {
    let secret = kassa_platform::auth::Secret::new(TOKEN_SECRET).expect("long enough");
    let claims = kassa_platform::auth::Claims::new(
        id,
        email,
        role,
        chrono::Utc::now(),
        chrono::Duration::hours(1),
    );
    kassa_platform::auth::issue(&secret, &claims)
}

/// Runs the operator's command `task` (`kassa users set-role`, `kassa keys revoke`) with
/// `args` against the users database of the installation `settings` describe.
pub async fn users_task(
    settings: &Settings,
    task: kassa_platform::service::Task,
    args: &[(&str, &str)],
) -> String {
    let db = kassa::app::open_database(settings, &kassa_users::SERVICE)
        .await
        .expect("the users database opens");
    let said = (task.run)(kassa_platform::service::TaskInput {
        db: db.clone(),
        options: Default::default(),
        args: args
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    })
    .await;
    db.close().await;
    said.unwrap_or_else(|e| panic!("kassa {}: {e}", task.command.join(" ")))
}

/// Gives the account `email` the role `role` (`kassa users set-role`) in the installation
/// `settings` describe.
pub async fn grant(settings: &Settings, email: &str, role: Role) {
    let task = kassa_users::principals::SET_ROLE;
    users_task(settings, task, &[("email", email), ("role", role.name())]).await;
}

/// An API key with `role`, named `name`, made in the users database of the installation
/// `settings` describe, as `kassa keys create` makes one.
pub async fn key_in(settings: &Settings, role: Role, name: &str) -> String {
    let db = kassa::app::open_database(settings, &kassa_users::SERVICE)
        .await
        .expect("the users database opens");
    let key = kassa_users::principals::make_key(&db, role, name)
        .await
        .expect("a key is made");
    db.close().await;
    key
}
