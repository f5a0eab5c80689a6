//! End to end, as a user runs it: `kassa serve` processes in distributed mode against the
//! PostgreSQL, RabbitMQ and Redis of this machine, with faults injected from outside: a process
//! killed with SIGKILL, the broker unreachable, a malformed message on a queue.

use crate::support;

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{AMQP_URL, Backend, PG_URL, REDIS_URL, Service, USER, eventually, metric, unique};
use tokio::{net::TcpListener, sync::watch};

/// One `kassa` process; killed when dropped.
struct Kassa {
    child: Child,
    log: PathBuf,
    /// `http://host:port` of each service it runs, as it printed them.
    urls: HashMap<String, String>,
    /// An admin's API key of this installation, made with `kassa keys create` once it runs.
    key: String,
    /// A client that shows `key`.
    http: reqwest::Client,
}

impl Kassa {
    /// Starts `kassa <args>` and waits until it prints the addresses of `services`.
    fn start(namespace: &str, args: &[&str], services: usize) -> Kassa {
        Kassa::start_on(Backend::Distributed, namespace, args, services)
    }

    /// [`Kassa::start`] with the broker of `backend` (RabbitMQ or Kafka).
    fn start_on(backend: Backend, namespace: &str, args: &[&str], services: usize) -> Kassa {
        if args.first() == Some(&"serve") {
            support::require_backend(backend);
        }
        // A process that serves routes tells who an API key is through the users service: one
        // that does not run it here (and is not told where it runs) serves a replica of it, on
        // the installation's one users database.
        let mut args: Vec<&str> = args.to_vec();
        let served = if args.first() == Some(&"serve") {
            args.iter()
                .skip(1)
                .take_while(|a| !a.starts_with("--"))
                .copied()
                .collect::<Vec<_>>()
        } else {
            Vec::new()
        };
        let mut services = services;
        let routes = served.iter().any(|s| *s != "notifications");
        if routes && !served.contains(&"users") && !args.contains(&"--users-url") {
            args.insert(served.len() + 1, "users");
            args.extend(["--users-port", "0"]);
            services += 1;
        }
        let log = std::env::temp_dir().join(format!("kassa-e2e-{namespace}-{}.log", unique("")));
        let mut command = Command::new(env!("CARGO_BIN_EXE_kassa"));
        if backend == Backend::Kafka {
            command
                .env("KASSA_BUS", "kafka")
                .env("KASSA_KAFKA_BROKERS", support::KAFKA_BROKERS)
                .env("KASSA_KAFKA_PARTITIONS", "2")
                .env("KASSA_KAFKA_REPLICATION", "1");
        }
        let mut child = command
            .args(&args)
            .args(["--namespace", namespace])
            .env("KASSA_DATABASE_URL", PG_URL)
            .env("KASSA_REDIS_URL", REDIS_URL)
            .env("KASSA_TOKEN_SECRET", support::TOKEN_SECRET)
            // Tests run side by side on one PostgreSQL: a few connections a service each.
            .env("KASSA_DB_MAX_CONNECTIONS", "4")
            .env("RUST_LOG", "info")
            .env_remove("RUST_BACKTRACE")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("kassa starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut urls = HashMap::new();
        while urls.len() < services {
            match lines.next() {
                Some(Ok(line)) => {
                    // `<service> http://<addr>  (Swagger UI: …)`
                    let mut words = line.split_whitespace();
                    if let (Some(name), Some(url)) = (words.next(), words.next())
                        && url.starts_with("http://")
                    {
                        urls.insert(name.to_owned(), url.to_owned());
                    }
                }
                _ => panic!(
                    "kassa exited before listening; log: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ),
            }
        }
        std::thread::spawn(move || for _ in lines {});
        let key = Kassa::make_key(namespace, &args);
        Kassa {
            child,
            log,
            urls,
            http: support::client_with_key(&key),
            key,
        }
    }

    /// `kassa keys create --role admin`, against the installation `args` start.
    fn make_key(namespace: &str, args: &[&str]) -> String {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kassa"));
        command
            .args([
                "keys",
                "create",
                "--role",
                "admin",
                "--name",
                &unique("e2e"),
            ])
            .args(["--namespace", namespace])
            .env("RUST_LOG", "warn");
        match args.iter().position(|a| *a == "--data-dir") {
            // `kassa up`: embedded, in its data folder.
            Some(i) if args.first() == Some(&"up") => {
                command.args(["--data-dir", args[i + 1]]);
            }
            _ => {
                command.env("KASSA_DATABASE_URL", PG_URL);
            }
        }
        let out = command.output().expect("kassa keys create runs");
        assert!(
            out.status.success(),
            "kassa keys create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        assert!(key.starts_with("kassa_"), "{key}");
        key
    }

    /// A client of `service` that shows this installation's admin key.
    fn client(&self, service: &str) -> Client {
        Client::new(self.url(service), &self.key)
    }

    /// Where `service` listens, read back from what the process printed.
    fn url(&self, service: &str) -> &str {
        self.urls
            .get(service)
            .unwrap_or_else(|| panic!("kassa runs no {service}: {:?}", self.urls))
    }

    /// The port `service` listens on.
    fn port(&self, service: &str) -> String {
        self.url(service)
            .rsplit_once(':')
            .expect("http://host:port")
            .1
            .to_owned()
    }

    /// A metric of this process, as `/metrics` of `service` shows it.
    async fn metric(&self, service: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
        support::metric(&self.http, self.url(service), name, labels).await
    }

    fn kill_9(&mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Kassa {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    fn new(base: &str, key: &str) -> Self {
        kassa_platform::http::https_ready();
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-api-key", key.parse().unwrap());
        Client {
            base: base.to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .default_headers(headers)
                .build()
                .unwrap(),
        }
    }

    async fn place(&self, total: &str, key: Option<&str>) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}/api/orders", self.base))
            .header("content-type", "application/json")
            .body(format!(r#"{{"userId":"{USER}","total":{total}}}"#));
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let r = req.send().await.expect("answered");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Option<Value> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().await.ok()
    }

    /// Places one order and waits until it is settled: the system works before a fault is
    /// injected.
    async fn place_and_settle(&self, total: &str) {
        let (_, body) = self.place(total, None).await;
        let id = body["orderId"].as_str().expect("orderId").to_owned();
        self.all_terminal(&[id], Duration::from_secs(20)).await;
    }

    /// The status of an order, or "" when it cannot be read.
    async fn order_status(&self, id: &str) -> String {
        self.get(&format!("/api/orders/{id}"))
            .await
            .map(|o| o["status"].as_str().unwrap_or("").to_owned())
            .unwrap_or_default()
    }

    /// Waits until every order is PAID, FAILED or CANCELLED; returns their statuses.
    async fn all_terminal(&self, ids: &[String], within: Duration) -> Vec<String> {
        eventually(
            "every order PAID, FAILED or CANCELLED",
            within,
            async || {
                let mut statuses = Vec::new();
                for id in ids {
                    statuses.push(self.order_status(id).await);
                }
                statuses
            },
            |statuses| {
                statuses
                    .iter()
                    .all(|s| matches!(s.as_str(), "PAID" | "FAILED" | "CANCELLED"))
            },
        )
        .await
    }
}

#[test]
fn a_service_that_is_not_running_is_named_in_one_line() {
    assert_eq!(
        support::reachable(Service::PostgreSql, "127.0.0.1:1"),
        Err("PostgreSQL is not reachable at 127.0.0.1:1: start it (scripts/test does)".to_owned())
    );
}

/// Removes what a test made under `namespace` when it ends, passed or failed.
fn leftovers(backend: Backend, namespace: &str) -> support::Leftovers {
    let mut leftovers = support::Leftovers::namespace(backend, namespace);
    leftovers.retry(kassa_platform::bus::RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(50),
    });
    leftovers
}

/// One test per broker for each scenario `async fn name(backend: Backend)`: RabbitMQ and, in a
/// build with the `kafka` feature, Kafka.
macro_rules! on_both_brokers {
    ($($name:ident),* $(,)?) => {
        mod rabbitmq {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Distributed).await
                }
            )*
        }
        #[cfg(feature = "kafka")]
        mod kafka {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Kafka).await
                }
            )*
        }
    };
}

on_both_brokers!(
    killing_payments_mid_flow_loses_nothing_and_doubles_nothing,
    a_malformed_message_is_dead_lettered_without_a_hot_loop,
    two_payments_replicas_share_the_work_and_charge_each_order_once,
);

async fn killing_payments_mid_flow_loses_nothing_and_doubles_nothing(backend: Backend) {
    let ns = unique("e");
    let _leftovers = leftovers(backend, &ns);
    let payments_args = |port: &str| {
        [
            "serve",
            "payments",
            "--payments-port",
            port,
            "--provider-latency-ms",
            "400",
            "--payment-lease-secs",
            "2",
        ]
        .map(str::to_owned)
    };
    let start_payments = |port: &str| {
        let args = payments_args(port);
        Kassa::start_on(backend, &ns, &args.each_ref().map(String::as_str), 1)
    };
    let mut payments = start_payments("0");
    let front = Kassa::start_on(
        backend,
        &ns,
        &[
            "serve",
            "gateway",
            "orders",
            "--gateway-port",
            "0",
            "--orders-port",
            "0",
            "--payments-url",
            payments.url("payments"),
        ],
        2,
    );
    let client = front.client("gateway");

    let mut ids = Vec::new();
    for _ in 0..40 {
        let (status, body) = client.place("10", None).await;
        assert_eq!(status, 202);
        ids.push(body["orderId"].as_str().unwrap().to_owned());
    }
    // Kill payments while charges wait on the (slow) provider.
    eventually(
        "a payment PROCESSING",
        Duration::from_secs(10),
        async || client.get("/api/payments/stats").await,
        |stats| {
            stats.as_ref().is_some_and(|s| {
                s["byStatus"]
                    .as_array()
                    .is_some_and(|by| by.iter().any(|s| s["status"] == "PROCESSING"))
            })
        },
    )
    .await;
    if backend == Backend::Kafka {
        // On the broker CI runs (tansu 0.6), a consumer started again does not get the group's
        // partitions back from the member that was killed, so records not yet read when it died
        // stay unread (issue 31). Until kassa takes them back itself, the kill comes once every
        // order's record has been read: what is tested here is the charges in flight.
        eventually(
            "payments to have read every order",
            Duration::from_secs(30),
            async || client.get("/api/payments/stats").await,
            |stats| {
                stats.as_ref().is_some_and(|s| {
                    s["byStatus"].as_array().is_some_and(|by| {
                        by.iter().filter_map(|s| s["count"].as_i64()).sum::<i64>() == 40
                    })
                })
            },
        )
        .await;
    }
    let port = payments.port("payments");
    payments.kill_9();
    // Back on the port it had, where the gateway reaches it.
    let _restarted = start_payments(&port);

    let statuses = client.all_terminal(&ids, Duration::from_secs(60)).await;
    assert!(statuses.iter().all(|s| s == "PAID"), "{statuses:?}");
    let stats = client.get("/api/payments/stats").await.unwrap();
    let counted: i64 = stats["byStatus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["count"].as_i64().unwrap())
        .sum();
    assert_eq!(counted, 40, "one payment per order, none twice: {stats}");
    for id in &ids {
        let p = client
            .get(&format!("/api/payments/order/{id}"))
            .await
            .unwrap();
        assert_eq!(p["status"], "APPROVED");
    }
}

/// A TCP relay to a local server, on a port of its own, that the test can cut (every connection
/// dropped, new ones reset as soon as they are made) and restore by sending false and true on
/// the returned switch; it stops when the switch is dropped. It listens all along, so nothing
/// else can take its port during a cut.
async fn tcp_proxy(target: &'static str) -> (u16, watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (switch, mut up) = watch::channel(true);
    tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((mut inbound, _)) = accepted else { continue };
                    if !*up.borrow() {
                        // Closed with a reset: to the client, as good as refused.
                        let _ = inbound.set_zero_linger();
                        continue;
                    }
                    connections.spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
                changed = up.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    if !*up.borrow_and_update() {
                        connections.abort_all();
                    }
                }
            }
        }
    });
    (port, switch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_accepted_while_the_broker_is_down_and_complete_when_it_is_back() {
    let ns = unique("e");
    let _leftovers = leftovers(Backend::Distributed, &ns);
    support::require(Service::RabbitMq);
    let (proxy_port, switch) = tcp_proxy("127.0.0.1:5672").await;
    let amqp = format!("amqp://guest:guest@127.0.0.1:{proxy_port}/%2f");
    let kassa = Kassa::start(
        &ns,
        &[
            "serve",
            "gateway",
            "orders",
            "payments",
            "--gateway-port",
            "0",
            "--orders-port",
            "0",
            "--payments-port",
            "0",
            "--amqp-url",
            &amqp,
        ],
        3,
    );
    let client = kassa.client("gateway");
    client.place_and_settle("5").await;

    switch.send_replace(false);
    let orders = kassa.client("orders");
    eventually(
        "orders to see the broker gone",
        Duration::from_secs(10),
        async || {
            orders
                .http
                .get(format!("{}/health/ready", orders.base))
                .send()
                .await
                .expect("answered")
                .json::<Value>()
                .await
                .unwrap_or_default()
        },
        |ready| ready["checks"]["broker"] == "down",
    )
    .await;
    let refused_before = kassa
        .metric("orders", "kassa_outbox_publish_failures_total", &[])
        .await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let (status, body) = client.place("6", None).await;
        assert_eq!(status, 202, "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "POST took {:?} with the broker down",
            started.elapsed()
        );
        ids.push(body["orderId"].as_str().unwrap().to_owned());
    }
    // Settling begins with publishing order.created: wait until the relay has offered the new
    // orders' events and had them refused.
    eventually(
        "the relay to have the new orders' events refused",
        Duration::from_secs(10),
        async || {
            kassa
                .metric("orders", "kassa_outbox_publish_failures_total", &[])
                .await
        },
        |refused| *refused >= refused_before + ids.len() as f64,
    )
    .await;
    for id in &ids {
        assert_eq!(
            client.order_status(id).await,
            "PENDING",
            "nothing can settle without the broker"
        );
    }

    switch.send_replace(true);
    let statuses = client.all_terminal(&ids, Duration::from_secs(60)).await;
    assert!(statuses.iter().all(|s| s == "PAID"), "{statuses:?}");
}

async fn a_malformed_message_is_dead_lettered_without_a_hot_loop(backend: Backend) {
    let ns = unique("e");
    let _leftovers = leftovers(backend, &ns);
    let common = ["--max-attempts", "3", "--retry-base-ms", "50"];
    let mut args = vec![
        "serve",
        "gateway",
        "orders",
        "payments",
        "--gateway-port",
        "0",
        "--orders-port",
        "0",
        "--payments-port",
        "0",
    ];
    args.extend(common);
    let kassa = Kassa::start_on(backend, &ns, &args, 3);
    let client = kassa.client("gateway");

    // Poison what payments reads, as a buggy producer would.
    let (dead_letters, poisoned) = poison(backend, &ns).await;

    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            client.place("7", None).await.1["orderId"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let statuses = client.all_terminal(&ids, Duration::from_secs(30)).await;
    assert!(
        statuses.iter().all(|s| s == "PAID"),
        "other messages are unaffected: {statuses:?}"
    );

    let dlq = |extra: &'static [&'static str]| {
        let ns = ns.clone();
        async move {
            let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_kassa"));
            cmd.args(["dlq"]).args(extra).args([
                "--namespace",
                &ns,
                "--database-url",
                PG_URL,
                "--amqp-url",
                AMQP_URL,
            ]);
            if backend == Backend::Kafka {
                cmd.args(["--bus", "kafka", "--kafka-brokers", support::KAFKA_BROKERS]);
            }
            let out = cmd.output().await.unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    let list =
        async || -> Vec<Value> { serde_json::from_str(&dlq(&["list", "--json"]).await).unwrap() };
    let letters = eventually("a dead letter", Duration::from_secs(15), list, |letters| {
        !letters.is_empty()
    })
    .await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["queue"], dead_letters);
    assert_eq!(letters[0]["attempts"], 3);
    assert_eq!(letters[0]["topic"], poisoned);
    assert!(
        letters[0]["error"]
            .as_str()
            .unwrap()
            .contains("malformed envelope"),
        "{letters:?}"
    );
    // Three attempts: two retries, then the dead letter.
    let consumer = [("consumer", "payments")];
    let counted = async |name| kassa.metric("payments", name, &consumer).await;
    assert_eq!(counted("kassa_consumer_retries_total").await, 2.0);
    assert_eq!(counted("kassa_dead_letters_total").await, 1.0);
    // Listing does not consume; a redrive sends it back for three more attempts.
    assert_eq!(list().await.len(), 1);
    assert!(
        dlq(&["redrive", "--consumer", "payments"])
            .await
            .contains("redrove 1")
    );
    eventually(
        "the redriven message dead-lettered again",
        Duration::from_secs(15),
        async || counted("kassa_dead_letters_total").await,
        |letters| *letters >= 2.0,
    )
    .await;
    // Two retries a round and nothing in between: no hot loop.
    assert_eq!(counted("kassa_consumer_retries_total").await, 4.0);
    assert_eq!(counted("kassa_dead_letters_total").await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_posts_with_one_key_make_one_order() {
    let ns = unique("e");
    let _leftovers = leftovers(Backend::Distributed, &ns);
    let kassa = Kassa::start(
        &ns,
        &[
            "serve",
            "gateway",
            "orders",
            "payments",
            "--gateway-port",
            "0",
            "--orders-port",
            "0",
            "--payments-port",
            "0",
        ],
        3,
    );
    let client = Arc::new(kassa.client("gateway"));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            client.place("11", Some("one-key-for-all")).await
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 202, "{body}");
        ids.insert(body["orderId"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1);
    let listed = client.get("/api/orders?limit=100").await.unwrap();
    assert_eq!(listed["meta"]["total"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kassa_up_stops_gracefully_and_resumes_where_it_stopped() {
    let ns = unique("u");
    let data = std::env::temp_dir().join(format!("kassa-e2e-{ns}"));
    let mut leftovers = support::Leftovers::namespace(Backend::Embedded, &ns);
    leftovers.folder(data.clone());
    let data_dir = data.to_str().unwrap().to_owned();
    let up = |latency: &'static str| {
        let args = vec![
            "up",
            "--data-dir",
            &data_dir,
            "--gateway-port",
            "0",
            "--orders-port",
            "0",
            "--payments-port",
            "0",
            "--provider-latency-ms",
            latency,
            "--payment-lease-secs",
            "1",
        ];
        Kassa::start(&ns, &args, 3)
    };
    let mut kassa = up("2000");
    let client = kassa.client("gateway");
    let mut ids = Vec::new();
    for _ in 0..20 {
        let (status, body) = client.place("9.5", None).await;
        assert_eq!(status, 202);
        ids.push(body["orderId"].as_str().unwrap().to_owned());
    }
    // Stop while every charge still waits on the provider.
    let pid = kassa.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = eventually(
        "kassa up to stop on SIGTERM",
        Duration::from_secs(20),
        async || kassa.child.try_wait().unwrap(),
        Option::is_some,
    )
    .await
    .expect("exited");
    assert!(status.success(), "exit status {status}: {}", kassa.log());
    // The process is gone, and its /metrics with it: its last words are in its log.
    assert!(kassa.log().contains("stopped"), "{}", kassa.log());

    let again = up("0");
    let client = again.client("gateway");
    let statuses = client.all_terminal(&ids, Duration::from_secs(30)).await;
    assert!(statuses.iter().all(|s| s == "PAID"), "{statuses:?}");
    let listed = client.get("/api/payments?limit=100").await.unwrap();
    assert_eq!(listed["meta"]["total"], 20);
    drop(leftovers);
}

/// Sends a malformed message where payments reads its events; answers where its dead letter
/// lands and the topic it is listed under.
async fn poison(backend: Backend, ns: &str) -> (String, String) {
    if backend == Backend::Kafka {
        return poison_kafka(ns).await;
    }
    let conn = lapin::Connection::connect(AMQP_URL, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(Default::default()).await.unwrap();
    ch.basic_publish(
        format!("{ns}.events").as_str().into(),
        "order.created".into(),
        Default::default(),
        b"{not json",
        lapin::BasicProperties::default().with_delivery_mode(2),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let _ = conn.close(200, "bye".into()).await;
    (format!("{ns}.payments.dlq"), "order.created".into())
}

/// A record with no type header and a body that is not JSON, on the topic of order events.
#[cfg(feature = "kafka")]
async fn poison_kafka(ns: &str) -> (String, String) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", support::KAFKA_BROKERS)
        .create()
        .unwrap();
    let topic = format!("{ns}.order.create");
    producer
        .send(
            FutureRecord::to(&topic).key("poison").payload("{not json"),
            Duration::from_secs(5),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    (format!("{topic}-dlq"), topic)
}

#[cfg(not(feature = "kafka"))]
async fn poison_kafka(_: &str) -> (String, String) {
    unreachable!("Kafka tests are generated only with the kafka feature")
}

async fn two_payments_replicas_share_the_work_and_charge_each_order_once(backend: Backend) {
    let ns = unique("r");
    let _leftovers = leftovers(backend, &ns);
    let replica = [
        "serve",
        "payments",
        "--payments-port",
        "0",
        "--provider-latency-ms",
        "50",
    ];
    let mut one = Kassa::start_on(backend, &ns, &replica, 1);
    let two = Kassa::start_on(backend, &ns, &replica, 1);
    let front = Kassa::start_on(
        backend,
        &ns,
        &[
            "serve",
            "gateway",
            "orders",
            "--gateway-port",
            "0",
            "--orders-port",
            "0",
        ],
        2,
    );
    let client = front.client("gateway");
    if backend == Backend::Kafka {
        // The group gives each replica its partitions once both have joined.
        for replica in [&one, &two] {
            eventually(
                "each replica has partitions of the order topic",
                Duration::from_secs(30),
                async || {
                    replica
                        .metric(
                            "payments",
                            "kassa_consumer_partitions",
                            &[("consumer", "payments")],
                        )
                        .await
                },
                |partitions| *partitions >= 1.0,
            )
            .await;
        }
    }
    let mut ids = Vec::new();
    for i in 0..60 {
        let total = if i % 10 == 0 { "4.01" } else { "4" };
        ids.push(
            client.place(total, None).await.1["orderId"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let statuses = client.all_terminal(&ids, Duration::from_secs(60)).await;
    assert_eq!(
        statuses.iter().filter(|s| *s == "FAILED").count(),
        6,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| *s == "PAID").count(),
        54,
        "{statuses:?}"
    );
    // The gateway reaches payments at its default URL, which no replica listens on here; count
    // the payments in their database instead.
    let db = kassa_platform::db::Db::connect(&kassa_platform::db::DbLocation::Postgres {
        url: kassa::settings::with_database(PG_URL, &format!("{ns}_payments")).unwrap(),
        max_connections: 1,
    })
    .await
    .unwrap();
    let row = kassa_platform::sql(
        "SELECT COUNT(*) AS n, COUNT(DISTINCT order_id) AS orders FROM payments",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(row.get::<i64>("n").unwrap(), 60);
    assert_eq!(row.get::<i64>("orders").unwrap(), 60);
    db.close().await;
    let mut settled = 0.0;
    for replica in [&one, &two] {
        let share = replica
            .metric("payments", "kassa_payments_settled_total", &[])
            .await;
        assert!(share > 0.0, "each replica takes a share of the queue");
        settled += share;
    }
    assert_eq!(settled, 60.0, "each payment settled once, by one replica");
    let settled_by_two = two
        .metric("payments", "kassa_payments_settled_total", &[])
        .await;

    // A replica dies: the other takes over its share. On Kafka the group hands the dead
    // member's partitions on when its session ends; tansu, the broker the tests run, ends a
    // session only when the group next changes (its heartbeats do not check sessions), so there
    // a replacement replica starts, as a supervisor would restart the dead one.
    one.kill_9();
    let _replacement =
        (backend == Backend::Kafka).then(|| Kassa::start_on(backend, &ns, &replica, 1));
    let mut more = Vec::new();
    for _ in 0..20 {
        more.push(
            client.place("4", None).await.1["orderId"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let statuses = client.all_terminal(&more, Duration::from_secs(60)).await;
    assert!(statuses.iter().all(|s| s == "PAID"), "{statuses:?}");
    let mut later = two
        .metric("payments", "kassa_payments_settled_total", &[])
        .await
        - settled_by_two;
    if let Some(replacement) = &_replacement {
        later += replacement
            .metric("payments", "kassa_payments_settled_total", &[])
            .await;
    }
    assert_eq!(later, 20.0, "the survivors settled every later order, once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_delays_payments_and_dead_letters_nothing() {
    let ns = unique("d");
    let _leftovers = leftovers(Backend::Distributed, &ns);
    support::require(Service::PostgreSql);
    let (proxy_port, switch) = tcp_proxy("127.0.0.1:5432").await;
    let db_via_proxy = format!("postgres://postgres@127.0.0.1:{proxy_port}/postgres");
    // Who a key is, is asked of users on the database that stays up.
    let users = Kassa::start(&ns, &["serve", "users", "--users-port", "0"], 1);
    let payments = Kassa::start(
        &ns,
        &[
            "serve",
            "payments",
            "--payments-port",
            "0",
            "--users-url",
            users.url("users"),
            "--database-url",
            &db_via_proxy,
            "--max-attempts",
            "2",
            "--retry-base-ms",
            "50",
            "--payment-lease-secs",
            "2",
        ],
        1,
    );
    let front = Kassa::start(
        &ns,
        &[
            "serve",
            "gateway",
            "orders",
            "--gateway-port",
            "0",
            "--orders-port",
            "0",
            "--payments-url",
            payments.url("payments"),
        ],
        2,
    );
    let client = front.client("gateway");
    client.place_and_settle("3").await;

    switch.send_replace(false);
    let mut ids = Vec::new();
    for _ in 0..10 {
        let (status, body) = client.place("3", None).await;
        assert_eq!(status, 202, "orders has its own database: {body}");
        ids.push(body["orderId"].as_str().unwrap().to_owned());
    }
    let r = client
        .http
        .get(format!("{}/api/payments/stats", client.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        503,
        "payments without its database says so"
    );
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["code"], "service_unavailable");
    // More deliveries put back for want of the database than the ten events' attempts add up
    // to (10 × --max-attempts 2), so at least one event was put back more often than its
    // attempts allow: had the outage used them up, it would have been dead-lettered.
    let base = payments.url("payments").to_owned();
    eventually(
        "payments puts deliveries back while its database is down",
        Duration::from_secs(60),
        async || {
            metric(
                &client.http,
                &base,
                "kassa_consumer_unavailable_total",
                &[("consumer", "payments")],
            )
            .await
        },
        |n| *n > 20.0,
    )
    .await;

    switch.send_replace(true);
    let statuses = client.all_terminal(&ids, Duration::from_secs(60)).await;
    assert!(statuses.iter().all(|s| s == "PAID"), "{statuses:?}");
    let out = Command::new(env!("CARGO_BIN_EXE_kassa"))
        .args([
            "dlq",
            "list",
            "--json",
            "--namespace",
            &ns,
            "--database-url",
            PG_URL,
            "--amqp-url",
            AMQP_URL,
        ])
        .output()
        .unwrap();
    let letters: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        letters.is_empty(),
        "an outage must not dead-letter anything: {letters:?}"
    );
}

/// Sends `body` as JSON with `method` to `url`; the status and the JSON answered.
async fn send_json(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Value,
) -> (u16, Value) {
    let r = http
        .request(method, url)
        .json(&body)
        .send()
        .await
        .expect("answered");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gym_replicas_share_one_capacity_and_one_cache() {
    use reqwest::Method;
    use serde_json::json;
    let ns = unique("g");
    let _leftovers = leftovers(Backend::Distributed, &ns);
    let members = Kassa::start(&ns, &["serve", "members", "--members-port", "0"], 1);
    let replica = [
        "serve",
        "classes",
        "payments",
        "--classes-port",
        "0",
        "--payments-port",
        "0",
    ];
    let replicas = [
        Kassa::start(&ns, &replica, 2),
        Kassa::start(&ns, &replica, 2),
    ];
    // The front desk's calls, with the installation's key.
    let http = members.http.clone();
    let mut ids = Vec::new();
    for i in 0..20 {
        let (status, member) = send_json(
            &http,
            Method::POST,
            &format!("{}/api/members", members.url("members")),
            json!({"name": format!("Member {i}"), "email": format!("m{i}@example.com"), "phoneNumber": "+4915112345678"}),
        )
        .await;
        assert_eq!(status, 201, "{member}");
        ids.push(member["id"].as_str().unwrap().to_owned());
    }
    // Classes has heard of all twenty once its copy counts them.
    let classes_db = kassa_platform::db::Db::connect(&kassa_platform::db::DbLocation::Postgres {
        url: kassa::settings::with_database(PG_URL, &format!("{ns}_classes")).unwrap(),
        max_connections: 1,
    })
    .await
    .unwrap();
    eventually(
        "classes to know the members",
        Duration::from_secs(20),
        async || {
            kassa_platform::known::count(&classes_db, "member")
                .await
                .unwrap_or(0)
        },
        |n| *n == 20,
    )
    .await;
    classes_db.close().await;
    let (status, class) = send_json(
        &http,
        Method::POST,
        &format!("{}/api/classes", replicas[0].url("classes")),
        json!({"name": "Spin", "description": "Fast", "capacity": 5}),
    )
    .await;
    assert_eq!(status, 201, "{class}");
    let class = class["id"].as_str().unwrap().to_owned();

    // Twenty enrolments at once, spread over both replicas: five places, five taken.
    let attempts = ids.iter().enumerate().map(|(i, member)| {
        let url = format!(
            "{}/api/classes/{class}/enrollments",
            replicas[i % 2].url("classes")
        );
        let http = http.clone();
        async move { send_json(&http, Method::POST, &url, json!({"memberId": member})).await }
    });
    let answers = futures_util::future::join_all(attempts).await;
    let taken = answers.iter().filter(|(s, _)| *s == 201).count();
    let full = answers
        .iter()
        .filter(|(s, b)| *s == 409 && b["code"] == "class_full")
        .count();
    assert_eq!((taken, full), (5, 15), "{answers:?}");

    // A payment changed through one replica is read back at once through the other: they share
    // the database and the cache.
    let pay = json!({"memberId": ids[0], "amount": 40, "paymentMethod": "Cash"});
    let (_, payment) = eventually(
        "payments to know the member",
        Duration::from_secs(20),
        async || {
            send_json(
                &http,
                Method::POST,
                &format!("{}/api/payments/manual", replicas[0].url("payments")),
                pay.clone(),
            )
            .await
        },
        |(status, _)| *status == 201,
    )
    .await;
    let id = payment["id"].as_str().unwrap().to_owned();
    for (round, amount) in [41, 42, 43, 44].into_iter().enumerate() {
        let (writer, reader) = (&replicas[round % 2], &replicas[(round + 1) % 2]);
        // The reader has it cached before the change.
        let read = http
            .get(format!("{}/Payment/{id}", reader.url("payments")))
            .send()
            .await
            .unwrap();
        assert_eq!(read.status(), 200);
        let (status, _) = send_json(
            &http,
            Method::PATCH,
            &format!("{}/api/payments/manual/{id}", writer.url("payments")),
            json!({"amount": amount}),
        )
        .await;
        assert_eq!(status, 200);
        let read: Value = http
            .get(format!("{}/Payment/{id}", reader.url("payments")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(read["amount"], amount, "round {round}");
    }
    drop(replicas);
    drop(members);
}

/// Seed 004: users (which keeps the saved cards) killed while an order waits for its payment.
/// The payment waits, PROCESSING, however long users is away, and completes once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_waits_for_users_and_completes_when_it_returns() {
    let ns = unique("u");
    let _leftovers = leftovers(Backend::Distributed, &ns);
    let mut users = Kassa::start(&ns, &["serve", "users", "--users-port", "0"], 1);
    let users_port = users.port("users");
    let front = Kassa::start(
        &ns,
        &[
            "serve",
            "gateway",
            "orders",
            "payments",
            "--gateway-port",
            "0",
            "--orders-port",
            "0",
            "--payments-port",
            "0",
            "--users-url",
            users.url("users"),
            "--payment-lease-secs",
            "1",
        ],
        3,
    );
    let gw = front.url("gateway").to_owned();
    let http = support::http_client();
    let post = |path: &str, token: Option<&str>, body: Value| {
        let mut req = http.post(format!("{gw}{path}")).json(&body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send()
    };
    let email = format!("{}@example.com", unique("ada"));
    let password = "analytical engine";
    let up = post(
        "/api/auth/signup",
        None,
        serde_json::json!({"name": "Ada Lovelace", "email": email, "password": password}),
    )
    .await
    .unwrap();
    assert_eq!(up.status(), 201);
    let signed: Value = post(
        "/api/auth/signin",
        None,
        serde_json::json!({"email": email, "password": password}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let token = signed["data"]["token"].as_str().unwrap().to_owned();
    let card = post(
        "/api/payment-methods/add",
        Some(&token),
        serde_json::json!({"card_number": "4242424242424242", "expiry_date": "12/34", "cardholder_name": "Ada Lovelace"}),
    )
    .await
    .unwrap();
    assert_eq!(card.status(), 201);

    users.kill_9();
    let created: Value = post(
        "/api/order/create",
        Some(&token),
        serde_json::json!({"item": "Margherita", "amount": 12.5}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let order = created["data"]["orderId"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_owned();
    let status = async || {
        let answer: Value = http
            .get(format!("{gw}/api/order/status/{order}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["data"]["status"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| answer.to_string())
    };
    // Payments asks users again after each lease (1 s) and opens its breaker; several leases
    // pass and the payment neither fails nor completes.
    eventually(
        "payments fails to reach users more than once",
        Duration::from_secs(30),
        async || front.log().matches("saved card not looked up").count(),
        |n| *n >= 3,
    )
    .await;
    assert_eq!(status().await, "pending", "the payment waits for users");

    let _users = Kassa::start(&ns, &["serve", "users", "--users-port", &users_port], 1);
    let settled = eventually(
        "the payment completes once users is back",
        Duration::from_secs(30),
        status,
        |s| s != "pending",
    )
    .await;
    assert_eq!(settled, "success");
}

/// One request of the burst: what was ordered, and what the order service answered.
struct Attempt {
    lines: Vec<(usize, i64)>,
    /// Paid at the till, not by card.
    cash: bool,
    status: u16,
    order_id: Option<String>,
}

/// Inventory killed with SIGKILL in the middle of a burst of orders for items, and started
/// again: an order refused while it is down stores nothing, none is ever sold beyond the stock,
/// and once every event has settled each product's units add up (available + reserved + sold =
/// what was counted in), each stored order's units are where its status says (held, kept, sold
/// or given back), and units held for requests that were refused (the hold committed, the
/// answer lost with the process) are no more than those requests asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_inventory_mid_burst_keeps_every_unit_counted() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures_util::StreamExt;
    use serde_json::json;

    const STOCK: i64 = 20;
    let ns = unique("i");
    let _leftovers = leftovers(Backend::Distributed, &ns);
    let start_inventory =
        |port: &str| Kassa::start(&ns, &["serve", "inventory", "--inventory-port", port], 1);
    let mut inventory = start_inventory("0");
    let front = Kassa::start(
        &ns,
        &[
            "serve",
            "gateway",
            "orders",
            "catalog",
            "payments",
            "qr",
            "users",
            "--gateway-port",
            "0",
            "--orders-port",
            "0",
            "--catalog-port",
            "0",
            "--payments-port",
            "0",
            "--qr-port",
            "0",
            "--users-port",
            "0",
            "--inventory-url",
            inventory.url("inventory"),
            "--provider-latency-ms",
            "20",
            "--provider-decline-rate",
            "0.1",
        ],
        6,
    );
    let gateway = front.url("gateway").to_owned();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-api-key", front.key.parse().unwrap());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .default_headers(headers)
        .build()
        .unwrap();
    let send = async |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut req = http.request(method, format!("{gateway}{path}"));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let r = req.send().await.expect("the gateway answers");
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap_or(Value::Null))
    };
    let get = async |path: &str| send(reqwest::Method::GET, path, None).await.1;

    // Three products, each with its stock counted in once inventory has made its item.
    let mut products = Vec::new();
    let mut items = Vec::new();
    for (name, price) in [("Cola", "1.50"), ("Water", "2.25"), ("Juice", "3.00")] {
        let (status, product) = send(
            reqwest::Method::POST,
            "/api/products",
            Some(json!({"name": name, "price": price.parse::<f64>().unwrap(), "isDispensable": true})),
        )
        .await;
        assert_eq!(status, 201, "{product}");
        let id = product["id"].as_str().unwrap().to_owned();
        let listed = eventually(
            "inventory's item for the product",
            Duration::from_secs(20),
            async || get(&format!("/api/Inventory?productId={id}")).await,
            |l| l.as_array().is_some_and(|a| a.len() == 1),
        )
        .await;
        let item = listed[0]["id"].as_str().unwrap().to_owned();
        let (status, counted) = send(
            reqwest::Method::PUT,
            &format!("/api/Inventory/{item}"),
            Some(json!({"quantity": STOCK})),
        )
        .await;
        assert_eq!(status, 200, "{counted}");
        products.push(id);
        items.push(item);
    }

    // The burst, paced, until thirty orders have been answered by inventory after its restart:
    // more units asked for than there are, a quarter of the orders to be paid in cash (held
    // until paid or cancelled), the rest charged by card (one in ten declined).
    let answered = AtomicUsize::new(0);
    let restarted = std::sync::atomic::AtomicBool::new(false);
    let answered_after_restart = AtomicUsize::new(0);
    let burst = futures_util::stream::iter(0..5_000usize)
        .map(|i| {
            let mut lines = vec![(i % 3, 1 + (i % 2) as i64)];
            if i % 5 == 0 {
                lines.push(((i + 1) % 3, 1));
            }
            let mut body = json!({
                "userId": USER,
                "items": lines.iter().map(|(p, q)| json!({"productId": products[*p], "quantity": q})).collect::<Vec<_>>(),
            });
            let cash = i % 4 == 0;
            if cash {
                body["paymentMethod"] = json!("Cash");
            }
            let (send, answered, restarted, answered_after_restart) =
                (&send, &answered, &restarted, &answered_after_restart);
            async move {
                if answered_after_restart.load(Ordering::SeqCst) >= 30 {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                let (status, answer) = send(reqwest::Method::POST, "/api/orders", Some(body)).await;
                answered.fetch_add(1, Ordering::SeqCst);
                if restarted.load(Ordering::SeqCst) && status != 503 {
                    answered_after_restart.fetch_add(1, Ordering::SeqCst);
                }
                Some(Attempt {
                    lines,
                    cash,
                    status,
                    order_id: answer["orderId"].as_str().map(str::to_owned),
                })
            }
        })
        .buffer_unordered(6)
        .filter_map(async |a| a)
        .collect::<Vec<_>>();
    let fault = async {
        eventually(
            "fifty orders of the burst answered",
            Duration::from_secs(60),
            async || answered.load(Ordering::SeqCst),
            |n| *n >= 50,
        )
        .await;
        let port = inventory.port("inventory");
        inventory.kill_9();
        let down_at = answered.load(Ordering::SeqCst);
        // Down until some orders have been refused for it.
        eventually(
            "orders answered while inventory is down",
            Duration::from_secs(60),
            async || answered.load(Ordering::SeqCst),
            |n| *n >= down_at + 10,
        )
        .await;
        inventory = start_inventory(&port);
        restarted.store(true, Ordering::SeqCst);
    };
    let (attempts, ()) = tokio::join!(burst, fault);

    for a in &attempts {
        assert!(
            matches!(a.status, 202 | 409 | 503),
            "an order is placed, refused for stock, or refused while inventory is down: {}",
            a.status
        );
        assert_eq!(a.status == 202, a.order_id.is_some());
    }
    let count = |s: u16| attempts.iter().filter(|a| a.status == s).count();
    eprintln!(
        "burst: {} placed, {} refused for stock, {} refused while inventory was down",
        count(202),
        count(409),
        count(503)
    );
    assert!(count(503) > 0, "the kill landed in the burst");
    assert!(count(409) > 0, "more was asked for than there is");
    assert!(
        answered_after_restart.load(Ordering::SeqCst) >= 30,
        "inventory answers again after its restart"
    );
    let stored: Vec<&Attempt> = attempts.iter().filter(|a| a.status == 202).collect();
    let listed = get("/api/orders?limit=1").await;
    assert_eq!(
        listed["meta"]["total"].as_u64(),
        Some(stored.len() as u64),
        "only the orders answered 202 are stored"
    );

    // Half the cash orders are cancelled; the others wait at the till.
    let mut cancelled = std::collections::HashSet::new();
    for (n, a) in stored.iter().enumerate() {
        let id = a.order_id.as_deref().unwrap();
        if a.cash && n % 2 == 0 {
            let (status, answer) =
                send(reqwest::Method::DELETE, &format!("/api/orders/{id}"), None).await;
            assert!(matches!(status, 200 | 204), "{status} {answer}");
            cancelled.insert(id.to_owned());
        }
    }

    // Two paid orders are picked up at a registered dispenser, code by code: they complete,
    // and inventory sells what it kept for them.
    let (status, dispenser) = send(
        reqwest::Method::POST,
        "/api/QrCode/devices",
        Some(json!({"name": "Lobby"})),
    )
    .await;
    assert_eq!(status, 201, "{dispenser}");
    let (device, secret) = (
        dispenser["deviceId"].as_str().unwrap(),
        dispenser["secret"].as_str().unwrap(),
    );
    let mut completed = std::collections::HashSet::new();
    for a in &stored {
        if completed.len() == 2 {
            break;
        }
        let id = a.order_id.as_deref().unwrap();
        let order = get(&format!("/api/orders/{id}")).await;
        if order["status"] != "PAID" {
            continue;
        }
        let generate = Some(json!({"orderId": id}));
        let (_, codes) = eventually(
            "the paid order's pickup codes",
            Duration::from_secs(30),
            async || {
                send(
                    reqwest::Method::POST,
                    "/api/QrCode/generate",
                    generate.clone(),
                )
                .await
            },
            |(status, _)| *status == 200,
        )
        .await;
        let codes = codes["codes"].as_array().unwrap();
        assert_eq!(
            codes.len() as i64,
            a.lines.iter().map(|(_, q)| q).sum::<i64>(),
            "a code per unit"
        );
        for code in codes {
            let code = code["id"].as_str().unwrap();
            let at = kassa_contracts::now().timestamp();
            let signature = kassa_platform::signing::sign_hex(
                secret.as_bytes(),
                &[format!("{code}:{device}:{at}").as_bytes()],
            );
            let (status, handed) = send(
                reqwest::Method::POST,
                "/api/QrCode/validate",
                Some(json!({"code": code, "deviceId": device, "timestamp": at, "signature": signature})),
            )
            .await;
            assert_eq!(status, 200, "{handed}");
        }
        completed.insert(id.to_owned());
    }
    assert_eq!(completed.len(), 2, "two paid orders to pick up");

    // Once every event has settled: each stored order's units are where its status says.
    let expected_hold = |status: &str| match status {
        "PENDING" => "HELD",
        "PAID" => "KEPT",
        "COMPLETED" => "SOLD",
        _ => "RELEASED",
    };
    let mut in_orders = [(0i64, 0i64); 3];
    for a in &stored {
        let id = a.order_id.as_deref().unwrap();
        let order = eventually(
            "the order settled",
            Duration::from_secs(60),
            async || get(&format!("/api/orders/{id}")).await,
            |o| match o["status"].as_str() {
                Some("COMPLETED") => true,
                Some("PAID") => !completed.contains(id),
                Some("FAILED" | "CANCELLED") => true,
                Some("PENDING") => !cancelled.contains(id),
                _ => false,
            },
        )
        .await;
        let status = order["status"].as_str().unwrap().to_owned();
        let hold = expected_hold(&status);
        eventually(
            &format!("the hold of a {status} order {hold}"),
            Duration::from_secs(60),
            async || get(&format!("/api/reservations/{id}")).await,
            |r| {
                r["items"].as_array().is_some_and(|l| {
                    l.len() == a.lines.len() && l.iter().all(|l| l["status"] == hold)
                })
            },
        )
        .await;
        for (product, quantity) in &a.lines {
            match hold {
                "HELD" | "KEPT" => in_orders[*product].0 += quantity,
                "SOLD" => in_orders[*product].1 += quantity,
                _ => {}
            }
        }
    }

    // Each product's units add up to what was counted in; what inventory holds beyond the
    // stored orders is held for requests refused mid-flight, and never more than they asked.
    let mut refused_units = [0i64; 3];
    for a in attempts.iter().filter(|a| a.status == 503) {
        for (product, quantity) in &a.lines {
            refused_units[*product] += quantity;
        }
    }
    for (p, item) in items.iter().enumerate() {
        let stock = get(&format!("/api/inventory/{item}")).await;
        let (available, reserved, sold) = (
            stock["available"].as_i64().unwrap(),
            stock["reserved"].as_i64().unwrap(),
            stock["sold"].as_i64().unwrap(),
        );
        eprintln!(
            "{}: available {available}, reserved {reserved} ({} for stored orders), sold {sold}; \
             refused while inventory was down: {} units",
            products[p], in_orders[p].0, refused_units[p]
        );
        assert!(available >= 0 && reserved >= 0 && sold >= 0, "{stock}");
        assert_eq!(available + reserved + sold, STOCK, "{stock}");
        assert_eq!(sold, in_orders[p].1, "{stock}");
        let orphans = reserved - in_orders[p].0;
        assert!(
            (0..=refused_units[p]).contains(&orphans),
            "held beyond the stored orders: {orphans} (refused requests asked for {}): {stock}",
            refused_units[p]
        );
    }
}
