//! End to end, as a user runs it: `kassa serve` processes in distributed mode against the
//! PostgreSQL, RabbitMQ and Redis of this machine, with faults injected from outside: a process
//! killed with SIGKILL, the broker unreachable, a malformed message on a queue.

mod support;

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{AMQP_URL, PG_URL, REDIS_URL, USER, unique};
use tokio::{net::TcpListener, sync::watch};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `kassa` process; killed when dropped.
struct Kassa {
    child: Child,
    log: PathBuf,
}

impl Kassa {
    /// Starts `kassa <args>` and waits until it prints the addresses of `services`.
    fn start(namespace: &str, args: &[&str], services: usize) -> Kassa {
        let log = std::env::temp_dir().join(format!("kassa-e2e-{namespace}-{}.log", unique("")));
        let mut child = Command::new(env!("CARGO_BIN_EXE_kassa"))
            .args(args)
            .args(["--namespace", namespace])
            .env("KASSA_DATABASE_URL", PG_URL)
            .env("KASSA_REDIS_URL", REDIS_URL)
            .env("RUST_LOG", "info")
            .env_remove("RUST_BACKTRACE")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("kassa starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = 0;
        while seen < services {
            match lines.next() {
                Some(Ok(line)) if line.contains("http://") => seen += 1,
                Some(Ok(_)) => {}
                _ => panic!(
                    "kassa exited before listening; log: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ),
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Kassa { child, log }
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
    fn new(port: u16) -> Self {
        Client {
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
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

    /// Waits until every order is PAID, FAILED or CANCELLED; returns their statuses.
    async fn all_terminal(&self, ids: &[String], within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        loop {
            let mut statuses = Vec::new();
            for id in ids {
                let s = self
                    .get(&format!("/api/orders/{id}"))
                    .await
                    .map(|o| o["status"].as_str().unwrap_or("").to_owned())
                    .unwrap_or_default();
                statuses.push(s);
            }
            if statuses
                .iter()
                .all(|s| matches!(s.as_str(), "PAID" | "FAILED" | "CANCELLED"))
            {
                return statuses;
            }
            if Instant::now() > deadline {
                panic!("orders not terminal in time: {statuses:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn cleanup(namespace: &str) {
    support::drop_databases(namespace).await;
    support::delete_queues(
        namespace,
        &kassa_platform::bus::RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(50),
        },
    )
    .await;
    support::delete_queues(namespace, &kassa_platform::bus::RetryPolicy::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_payments_mid_flow_loses_nothing_and_doubles_nothing() {
    let ns = unique("e");
    let (payments_port, gateway_port) = (free_port(), free_port());
    let pp = payments_port.to_string();
    let payments_args = [
        "serve",
        "payments",
        "--payments-port",
        &pp,
        "--provider-latency-ms",
        "400",
        "--payment-lease-secs",
        "2",
        "--outbox-lease-secs",
        "2",
    ];
    let mut payments = Kassa::start(&ns, &payments_args, 1);
    let gp = gateway_port.to_string();
    let purl = format!("http://127.0.0.1:{payments_port}");
    let _front = Kassa::start(
        &ns,
        &[
            "serve",
            "gateway",
            "orders",
            "--gateway-port",
            &gp,
            "--orders-port",
            "0",
            "--payments-url",
            &purl,
        ],
        2,
    );
    let client = Client::new(gateway_port);

    let mut ids = Vec::new();
    for _ in 0..40 {
        let (status, body) = client.place("10", None).await;
        assert_eq!(status, 202);
        ids.push(body["orderId"].as_str().unwrap().to_owned());
    }
    // Kill payments while charges wait on the (slow) provider.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let processing = client
            .get("/api/payments/stats")
            .await
            .and_then(|s| s["byStatus"].as_array().cloned())
            .unwrap_or_default();
        if processing.iter().any(|s| s["status"] == "PROCESSING") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no payment ever got to PROCESSING"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    payments.kill_9();
    let _restarted = Kassa::start(&ns, &payments_args, 1);

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
    cleanup(&ns).await;
}

/// A TCP relay to a local server that the test can cut (every connection dropped, new ones
/// refused) and restore.
async fn tcp_proxy(port: u16, target: &'static str, up: watch::Receiver<bool>) {
    loop {
        let mut up_rx = up.clone();
        let _ = up_rx.wait_for(|u| *u).await;
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((mut inbound, _)) = accepted else { continue };
                    connections.spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
                _ = up_rx.wait_for(|u| !*u) => break,
            }
        }
        connections.abort_all();
        drop(listener);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_accepted_while_the_broker_is_down_and_complete_when_it_is_back() {
    let ns = unique("e");
    let proxy_port = free_port();
    let (switch, up) = watch::channel(true);
    tokio::spawn(tcp_proxy(proxy_port, "127.0.0.1:5672", up));
    let gateway_port = free_port();
    let gp = gateway_port.to_string();
    let amqp = format!("amqp://guest:guest@127.0.0.1:{proxy_port}/%2f");
    let _kassa = Kassa::start(
        &ns,
        &[
            "serve",
            "gateway",
            "orders",
            "payments",
            "--gateway-port",
            &gp,
            "--orders-port",
            "0",
            "--payments-port",
            "0",
            "--amqp-url",
            &amqp,
        ],
        3,
    );
    let client = Client::new(gateway_port);
    client.place_and_settle("5").await;

    switch.send_replace(false);
    tokio::time::sleep(Duration::from_millis(300)).await;
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
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pending = client
        .get(&format!("/api/orders/{}", ids[0]))
        .await
        .unwrap();
    assert_eq!(
        pending["status"], "PENDING",
        "nothing can settle without the broker"
    );

    switch.send_replace(true);
    let statuses = client.all_terminal(&ids, Duration::from_secs(60)).await;
    assert!(statuses.iter().all(|s| s == "PAID"), "{statuses:?}");
    cleanup(&ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_message_is_dead_lettered_without_a_hot_loop() {
    let ns = unique("e");
    let gateway_port = free_port();
    let gp = gateway_port.to_string();
    let common = ["--max-attempts", "3", "--retry-base-ms", "50"];
    let mut args = vec![
        "serve",
        "gateway",
        "orders",
        "payments",
        "--gateway-port",
        &gp,
        "--orders-port",
        "0",
        "--payments-port",
        "0",
    ];
    args.extend(common);
    let kassa = Kassa::start(&ns, &args, 3);
    let client = Client::new(gateway_port);

    // Poison the payments queue through the events exchange, as a buggy producer would.
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
            let out = cmd.output().await.unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let letters: Vec<Value> = loop {
        let letters: Vec<Value> = serde_json::from_str(&dlq(&["list", "--json"]).await).unwrap();
        if !letters.is_empty() || Instant::now() > deadline {
            break letters;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["queue"], format!("{ns}.payments.dlq"));
    assert_eq!(letters[0]["attempts"], 3);
    assert_eq!(letters[0]["topic"], "order.created");
    assert!(
        letters[0]["error"]
            .as_str()
            .unwrap()
            .contains("malformed envelope"),
        "{letters:?}"
    );
    // Three attempts, two retries logged, then quiet: no hot loop.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let retries = kassa.log().matches("handler failed; will retry").count();
    assert_eq!(retries, 2, "{}", kassa.log());
    // Listing does not consume; a redrive sends it back for three more attempts.
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&dlq(&["list", "--json"]).await)
            .unwrap()
            .len(),
        1
    );
    assert!(
        dlq(&["redrive", "--consumer", "payments"])
            .await
            .contains("redrove 1")
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while kassa.log().matches("handler failed; will retry").count() < 4 {
        assert!(
            Instant::now() < deadline,
            "the redriven message was not retried"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cleanup(&ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_posts_with_one_key_make_one_order() {
    let ns = unique("e");
    let gateway_port = free_port();
    let gp = gateway_port.to_string();
    let _kassa = Kassa::start(
        &ns,
        &[
            "serve",
            "gateway",
            "orders",
            "payments",
            "--gateway-port",
            &gp,
            "--orders-port",
            "0",
            "--payments-port",
            "0",
        ],
        3,
    );
    let client = Arc::new(Client::new(gateway_port));
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
    cleanup(&ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kassa_up_stops_gracefully_and_resumes_where_it_stopped() {
    let ns = unique("u");
    let data = std::env::temp_dir().join(format!("kassa-e2e-{ns}"));
    let data_dir = data.to_str().unwrap().to_owned();
    let gateway_port = free_port();
    let gp = gateway_port.to_string();
    let up = |latency: &'static str| {
        let args = vec![
            "up",
            "--data-dir",
            &data_dir,
            "--gateway-port",
            &gp,
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
    let client = Client::new(gateway_port);
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
    let stopped = Instant::now();
    let status = loop {
        if let Some(status) = kassa.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(20),
            "kassa up did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status}: {}", kassa.log());
    assert!(kassa.log().contains("stopped"), "{}", kassa.log());

    let _again = up("0");
    let statuses = client.all_terminal(&ids, Duration::from_secs(30)).await;
    assert!(statuses.iter().all(|s| s == "PAID"), "{statuses:?}");
    let listed = client.get("/api/payments?limit=100").await.unwrap();
    assert_eq!(listed["meta"]["total"], 20);
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_payments_replicas_share_the_work_and_charge_each_order_once() {
    let ns = unique("r");
    let gateway_port = free_port();
    let gp = gateway_port.to_string();
    let replica = [
        "serve",
        "payments",
        "--payments-port",
        "0",
        "--provider-latency-ms",
        "50",
    ];
    let one = Kassa::start(&ns, &replica, 1);
    let two = Kassa::start(&ns, &replica, 1);
    let _front = Kassa::start(
        &ns,
        &[
            "serve",
            "gateway",
            "orders",
            "--gateway-port",
            &gp,
            "--orders-port",
            "0",
        ],
        2,
    );
    let client = Client::new(gateway_port);
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
    for replica in [&one, &two] {
        assert!(
            replica.log().contains("payment settled"),
            "each replica takes a share of the queue"
        );
    }
    cleanup(&ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_delays_payments_and_dead_letters_nothing() {
    let ns = unique("d");
    let proxy_port = free_port();
    let (switch, up) = watch::channel(true);
    tokio::spawn(tcp_proxy(proxy_port, "127.0.0.1:5432", up));
    let (payments_port, gateway_port) = (free_port(), free_port());
    let (pp, gp) = (payments_port.to_string(), gateway_port.to_string());
    let db_via_proxy = format!("postgres://postgres@127.0.0.1:{proxy_port}/postgres");
    let purl = format!("http://127.0.0.1:{payments_port}");
    let _payments = Kassa::start(
        &ns,
        &[
            "serve",
            "payments",
            "--payments-port",
            &pp,
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
    let _front = Kassa::start(
        &ns,
        &[
            "serve",
            "gateway",
            "orders",
            "--gateway-port",
            &gp,
            "--orders-port",
            "0",
            "--payments-url",
            &purl,
        ],
        2,
    );
    let client = Client::new(gateway_port);
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
    // Longer than two attempts would last, each waiting at most the 5 s a connection is
    // awaited from the pool.
    tokio::time::sleep(Duration::from_secs(12)).await;

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
    cleanup(&ns).await;
}
