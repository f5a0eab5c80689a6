//! Seed 002's analytics through the gateway, on every backend: after a randomised run of paid,
//! declined, failed, cancelled, refunded, pending and completed orders, every report reconciles
//! with the orders and payments services' own data; `kassa analytics rebuild` makes the same
//! figures again from the kept events; bad input is a 400 that names its parameter; and the
//! dashboard, rendered by headless Chromium, shows what the reports say.

use crate::support;

use std::{
    collections::BTreeMap,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use kassa_platform::testing::eventually;
use serde_json::{Value, json};
use support::{Backend, PG_URL, TestApp, spawn_app, spawn_app_with};

/// These scenarios exercise every service.
const SERVICES: &[&str] = support::ALL;

on_both_backends!(
    reports_reconcile_with_orders_and_payments_and_survive_a_rebuild,
    bad_input_is_refused_and_names_its_parameter,
);

/// An amount as the API writes it (`12.3`, `0`), in cents.
fn cents(v: &Value) -> i64 {
    let text = v.to_string();
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let frac = format!("{frac:0<2}");
    int.parse::<i64>().unwrap() * 100 + frac[..2].parse::<i64>().unwrap()
}

/// A number from 0 to n-1 that differs from run to run.
fn pick(n: u128) -> u128 {
    uuid::Uuid::new_v4().as_u128() % n
}

/// Every row of a `{data, meta}` list, page by page.
async fn all(app: &TestApp, path: &str) -> Vec<Value> {
    let mut rows = Vec::new();
    for page in 1.. {
        let sep = if path.contains('?') { '&' } else { '?' };
        let (status, body) = app.get(&format!("{path}{sep}limit=100&page={page}")).await;
        assert_eq!(status, 200, "{path}: {body}");
        let data = body["data"].as_array().unwrap();
        rows.extend(data.iter().cloned());
        if page >= body["meta"]["totalPages"].as_i64().unwrap_or(0) {
            break;
        }
    }
    rows
}

/// Today ± a day in UTC, so a run across midnight is counted whole.
fn around_today() -> String {
    let today = chrono::Utc::now().date_naive();
    format!(
        "from={}&to={}&timeZone=UTC",
        today.pred_opt().unwrap(),
        today.succ_opt().unwrap()
    )
}

/// What the orders and payments services say, as the summary would put it.
async fn expected(app: &TestApp) -> Value {
    let orders = all(app, "/api/orders").await;
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for o in &orders {
        *counts
            .entry(o["status"].as_str().unwrap().to_lowercase())
            .or_default() += 1;
    }
    let payments = all(app, "/api/payments").await;
    let (mut revenue, mut refunds, mut paid, mut refunded) = (0, 0, 0, 0);
    for p in &payments {
        match p["status"].as_str().unwrap() {
            "APPROVED" => {
                revenue += cents(&p["amount"]);
                paid += 1;
            }
            "REFUNDED" => {
                revenue += cents(&p["amount"]);
                refunds += cents(&p["amount"]);
                paid += 1;
                refunded += 1;
            }
            _ => {}
        }
    }
    let n = |s: &str| counts.get(s).copied().unwrap_or(0);
    json!({
        "orders": orders.len(),
        "pending": n("pending"),
        "paid": n("paid"),
        "completed": n("completed"),
        "failed": n("failed"),
        "cancelled": n("cancelled"),
        "paidOrders": paid,
        "refundedOrders": refunded,
        "revenue": revenue,
        "refunds": refunds,
    })
}

/// The summary's figures in the shape of [`expected`].
fn figures(summary: &Value) -> Value {
    let usd = summary["totals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["currency"] == "USD");
    let money = |field: &str| usd.map(|t| cents(&t[field])).unwrap_or(0);
    json!({
        "orders": summary["orders"],
        "pending": summary["pending"],
        "paid": summary["paid"],
        "completed": summary["completed"],
        "failed": summary["failed"],
        "cancelled": summary["cancelled"],
        "paidOrders": summary["paidOrders"],
        "refundedOrders": summary["refundedOrders"],
        "revenue": money("revenue"),
        "refunds": money("refunds"),
    })
}

/// Places a Cash order for `quantity` teas; its payment's id once it waits at the till.
async fn cash_order(app: &TestApp, tea: &str, quantity: i64) -> (String, String) {
    let body = json!({
        "userId": support::USER,
        "items": [{"productId": tea, "quantity": quantity}],
        "paymentMethod": "Cash",
    });
    let (status, placed) = app.post_json("/api/orders", &body.to_string(), &[]).await;
    assert_eq!(status, 202, "{placed}");
    let order = placed["orderId"].as_str().unwrap().to_owned();
    let payment = app
        .wait_for(&format!("/api/Payment/order/{order}"), |p| {
            p["status"] == "PENDING"
        })
        .await;
    (order, payment["id"].as_str().unwrap().to_owned())
}

/// Runs `kassa analytics rebuild` against the app's storage.
fn rebuild(app: &TestApp) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kassa"));
    cmd.args(["analytics", "rebuild", "--namespace", &app.namespace]);
    match support::data_dir_of(&app.settings) {
        Some(dir) => cmd.arg("--data-dir").arg(dir),
        None => cmd.args(["--database-url", PG_URL]),
    };
    let out = cmd.output().expect("kassa runs");
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    said
}

/// A day of trade, randomised: checkout orders approved (some then cancelled, so refunded),
/// declined and failed; kiosk orders for tea paid in cash, cancelled unpaid, or still waiting.
/// Answers the tea's id and how many teas were sold.
async fn a_day_of_trade(app: &TestApp, checkouts: u64, kiosk: u64) -> (String, i64) {
    let (status, tea) = app
        .post_json("/api/products", r#"{"name":"Tea","price":3.5}"#, &[])
        .await;
    assert_eq!(status, 201, "{tea}");
    let tea = tea["id"].as_str().unwrap().to_owned();
    let item = app
        .wait_for(&format!("/api/Inventory?productId={tea}"), |items| {
            items.as_array().is_some_and(|a| a.len() == 1)
        })
        .await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let counted = app
        .client
        .put(format!("{}/api/Inventory/{item}", app.gateway))
        .json(&json!({"quantity": 1000}))
        .send()
        .await
        .unwrap();
    assert_eq!(counted.status(), 200);

    // Checkout orders: approved (some then cancelled, so refunded), declined, failed.
    let mut plan = Vec::new();
    for i in 0..checkouts {
        let kind = pick(4);
        let cents = 1000 + i * 37;
        let total = match kind {
            1 => format!("{}.01", cents / 100),
            2 => format!("{}.02", cents / 100),
            _ => format!("{}.{:02}", cents / 100, (cents % 100) / 10 * 10),
        };
        let id = app.place_order(&total).await;
        plan.push((id, kind));
    }
    for (id, kind) in &plan {
        match kind {
            0 => {
                app.order_reaches(id, &["PAID"]).await;
            }
            3 => {
                app.order_reaches(id, &["PAID"]).await;
                let (status, _) = app.patch(&format!("/api/orders/{id}/cancel"), None).await;
                assert_eq!(status, 202);
                app.payment_of(id, &["REFUNDED"]).await;
            }
            _ => {
                app.order_reaches(id, &["FAILED"]).await;
            }
        }
    }
    // Kiosk orders paid in cash: confirmed (they complete, and sell their tea), cancelled
    // before they were paid, or still waiting at the till.
    let mut teas_sold = 0;
    for _ in 0..kiosk {
        let quantity = 1 + pick(3) as i64;
        let (order, payment) = cash_order(app, &tea, quantity).await;
        match pick(3) {
            0 => {
                let (status, body) = app
                    .post_json(&format!("/api/Payment/{payment}/confirm"), "", &[])
                    .await;
                assert_eq!(status, 200, "{body}");
                app.order_reaches(&order, &["COMPLETED"]).await;
                teas_sold += quantity;
            }
            1 => {
                let (status, _) = app
                    .patch(&format!("/api/orders/{order}/cancel"), None)
                    .await;
                assert_eq!(status, 202);
                app.order_reaches(&order, &["CANCELLED"]).await;
            }
            _ => {}
        }
    }

    (tea, teas_sold)
}

async fn reports_reconcile_with_orders_and_payments_and_survive_a_rebuild(backend: Backend) {
    let app = spawn_app(backend, SERVICES).await;
    let (tea, teas_sold) = a_day_of_trade(&app, 24, 9).await;

    // The summary reconciles with what orders and payments say, seconds behind them.
    let want = expected(&app).await;
    let range = around_today();
    let summary_path = format!("/api/v1/reports/reports/summary?{range}");
    let summary = eventually(
        "the summary reconciles with orders and payments",
        Duration::from_secs(30),
        async || app.get(&summary_path).await,
        |(status, body)| *status == 200 && figures(body) == want,
    )
    .await
    .1;
    assert_eq!(summary["timeZone"], "UTC");
    assert!(
        summary["activity"]["order.created"].as_i64().unwrap() >= want["orders"].as_i64().unwrap(),
        "{summary}"
    );
    let usd = &summary["totals"][0];
    let paid_orders = want["paidOrders"].as_i64().unwrap();
    if paid_orders > 0 {
        let revenue = want["revenue"].as_i64().unwrap();
        let average = (revenue * 2 + paid_orders) / (2 * paid_orders);
        assert_eq!(cents(&usd["averageTicket"]), average, "{summary}");
    }

    // The trend adds up to the summary, hour by hour.
    let (status, trend) = app
        .get(&format!(
            "/api/v1/reports/reports/sales-trend?{range}&interval=hour"
        ))
        .await;
    assert_eq!(status, 200, "{trend}");
    let points = trend["points"].as_array().unwrap();
    assert_eq!(points.len(), 72);
    let orders: i64 = points.iter().map(|p| p["orders"].as_i64().unwrap()).sum();
    let revenue: i64 = points
        .iter()
        .flat_map(|p| p["totals"].as_array().unwrap())
        .map(|t| cents(&t["revenue"]))
        .sum();
    assert_eq!(orders, want["orders"].as_i64().unwrap());
    assert_eq!(revenue, want["revenue"].as_i64().unwrap());

    // Favourites: the teas of completed orders, never those of cancelled or unpaid ones.
    let (status, favorites) = app
        .get(&format!("/api/v1/reports/reports/favorites?{range}&top=3"))
        .await;
    assert_eq!(status, 200, "{favorites}");
    if teas_sold > 0 {
        assert_eq!(favorites["byQuantity"][0]["productId"], tea.as_str());
        assert_eq!(favorites["byQuantity"][0]["name"], "Tea");
        assert_eq!(favorites["byQuantity"][0]["quantity"], teas_sold);
        assert_eq!(
            cents(&favorites["byRevenue"][0]["revenue"]),
            teas_sold * 350
        );
    } else {
        assert_eq!(favorites["byQuantity"], json!([]), "{favorites}");
    }

    // Recent orders: every order, where the orders service says it stands.
    let recent = all(
        &app,
        &format!("/api/v1/reports/reports/recent-orders?{range}"),
    )
    .await;
    let orders = all(&app, "/api/orders").await;
    assert_eq!(recent.len(), orders.len());
    let status_of: BTreeMap<&str, &str> = orders
        .iter()
        .map(|o| (o["id"].as_str().unwrap(), o["status"].as_str().unwrap()))
        .collect();
    for r in &recent {
        assert_eq!(
            status_of[r["orderId"].as_str().unwrap()],
            r["status"],
            "{r}"
        );
    }
    let placed: Vec<&str> = recent
        .iter()
        .map(|r| r["placedAt"].as_str().unwrap())
        .collect();
    assert!(placed.windows(2).all(|w| w[0] >= w[1]), "newest first");

    // A figure spoiled by hand is made right again by a rebuild from the kept events.
    let db = kassa::app::open_database(&app.settings, &kassa_analytics::SERVICE)
        .await
        .unwrap();
    kassa_platform::db::sql("UPDATE sales_slots SET revenue_minor = revenue_minor + 999")
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    let (_, spoiled) = app.get(&summary_path).await;
    assert_ne!(figures(&spoiled), want);
    let said = rebuild(&app);
    assert!(said.contains("rebuilt from"), "{said}");
    let (_, rebuilt) = app.get(&summary_path).await;
    assert_eq!(figures(&rebuilt), want, "{said}");
    let (_, again) = app
        .get(&format!("/api/v1/reports/reports/favorites?{range}&top=3"))
        .await;
    assert_eq!(again, favorites);
    app.stop().await;
}

async fn bad_input_is_refused_and_names_its_parameter(backend: Backend) {
    let app = spawn_app(backend, SERVICES).await;
    let base = "/api/v1/reports/reports";
    for (path, param, code) in [
        ("summary?from=2026-13-01", "from", "invalid_date"),
        ("summary?to=yesterday", "to", "invalid_date"),
        (
            "summary?timeZone=Mars/Olympus",
            "timeZone",
            "invalid_time_zone",
        ),
        ("summary?currency=XYZ", "currency", "invalid_currency"),
        ("summary?page=2", "page", "unknown_parameter"),
        ("summary?colour=red", "colour", "unknown_parameter"),
        (
            "summary?from=2026-01-01&from=2026-01-02",
            "from",
            "repeated_parameter",
        ),
        ("favorites?top=0", "top", "invalid_top"),
        ("favorites?top=101", "top", "invalid_top"),
        ("favorites?top=2.5", "top", "invalid_top"),
        (
            "sales-trend?interval=minute",
            "interval",
            "invalid_interval",
        ),
        ("recent-orders?status=LOST", "status", "invalid_status"),
        ("recent-orders?limit=1000", "limit", "invalid_pagination"),
        ("summary?timeZone=%20UTC", "timeZone", "invalid_time_zone"),
        ("summary?from=2026-1-05", "from", "invalid_date"),
        ("favorites?top=%2B5", "top", "invalid_top"),
    ] {
        let (status, body) = app.get(&format!("{base}/{path}")).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(
            (body["param"].as_str(), body["code"].as_str()),
            (Some(param), Some(code)),
            "{path}: {body}"
        );
    }
    // Each alone is fine, together they are not: a 422.
    for (path, code) in [
        ("summary?from=2026-02-02&to=2026-02-01", "invalid_range"),
        ("summary?from=2000-01-01&to=2026-01-01", "invalid_range"),
        (
            "sales-trend?from=2026-01-01&to=2026-03-01&interval=hour",
            "too_many_points",
        ),
        ("recent-orders?page=101&limit=100", "page_too_deep"),
    ] {
        let (status, body) = app.get(&format!("{base}/{path}")).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (422, Some(code)),
            "{path}: {body}"
        );
    }
    let (status, body) = app.get("/dashboard?from=2026-01-01").await;
    assert_eq!(
        (status, body["param"].as_str()),
        (400, Some("from")),
        "{body}"
    );

    // What a shop in Jakarta asks for: its own day, weeks from Monday, an empty period whole.
    let (status, trend) = app
        .get(&format!(
            "{base}/sales-trend?from=2026-11-30&to=2026-12-13&timeZone=Asia/Jakarta&interval=week"
        ))
        .await;
    assert_eq!(status, 200, "{trend}");
    assert_eq!(trend["start"], "2026-11-30T00:00:00+07:00");
    assert_eq!(trend["points"].as_array().unwrap().len(), 2);
    assert_eq!(trend["points"][1]["start"], "2026-12-07T00:00:00+07:00");
    assert_eq!(trend["points"][1]["orders"], 0);
    app.stop().await;
}

/// The dashboard, loaded by headless Chromium through the gateway and left to refresh itself,
/// shows the summary's figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_chromium_shows_what_the_reports_say() {
    let Some(chromium) = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        panic!("Chromium is needed: apt-get install chromium (scripts/test installs it)");
    };
    let app = spawn_app(Backend::Embedded, SERVICES).await;
    for total in ["12.50", "7.25", "3.01"] {
        app.place_order(total).await;
    }
    let summary = eventually(
        "three orders settle in the summary",
        Duration::from_secs(20),
        async || app.get("/api/v1/reports/reports/summary").await.1,
        |s| s["orders"] == 3 && s["pending"] == 0,
    )
    .await;

    // The dashboard is the staff's: a member of staff signs in, and the browser holds the
    // token in its cookie. Chromium is handed that cookie as a browser gets it, from a page
    // of the same host (cookies are not kept apart by port) that sets it and sends it on.
    let (_, email) = support::signed_up(&app.anon, &app.gateway).await;
    support::grant(&app.settings, &email, kassa_platform::auth::Role::Staff).await;
    let token = support::signed_in(&app.anon, &app.gateway, &email).await;
    let dashboard = format!("{}/dashboard", app.gateway);
    let hop = axum::Router::new().route(
        "/",
        axum::routing::get(move || async move {
            (
                axum::http::StatusCode::FOUND,
                [
                    (
                        "set-cookie",
                        format!("token={token}; Path=/; HttpOnly; SameSite=Lax"),
                    ),
                    ("location", dashboard),
                ],
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hop_url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hop).await });

    let profile = tempdir("kassa-chromium");
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=25000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(&hop_url)
        .output()
        .expect("chromium runs");
    let _ = std::fs::remove_dir_all(&profile);
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        dom.contains("<main>"),
        "{dom}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let figure = |name: &str| -> String {
        let marker = format!("data-figure=\"{name}\"");
        let at = dom
            .find(&marker)
            .unwrap_or_else(|| panic!("{name} in {dom}"));
        let rest = &dom[at..];
        let start = rest.find('>').unwrap() + 1;
        let end = rest[start..].find('<').unwrap() + start;
        rest[start..end].to_owned()
    };
    assert_eq!(figure("orders"), summary["orders"].to_string());
    assert_eq!(figure("failed"), summary["failed"].to_string());
    assert_eq!(
        figure("revenue"),
        summary["totals"][0]["revenue"].to_string()
    );
    assert_eq!(
        figure("averageTicket"),
        summary["totals"][0]["averageTicket"].to_string()
    );
    assert!(dom.contains("data-chart=\"today-USD\""), "{dom}");
    assert_eq!(dom.matches("data-order=").count(), 3);
    // It refreshed itself from the server at least once in its 25 virtual seconds.
    let refreshes: u32 = dom
        .split("data-refreshes=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(refreshes >= 1, "the page did not refresh itself: {dom}");
    app.stop().await;
}

fn tempdir(prefix: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(support::unique(prefix));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The ClickHouse server the scale path is tested against (`scripts/test` starts Debian's).
fn clickhouse_server() -> String {
    std::env::var("KASSA_TEST_CLICKHOUSE").unwrap_or_else(|_| "http://127.0.0.1:8123".into())
}

async fn clickhouse(client: &reqwest::Client, statement: &str) -> String {
    let r = client
        .post(format!("{}/", clickhouse_server()))
        .body(statement.to_owned())
        .send()
        .await
        .unwrap_or_else(|e| panic!("ClickHouse at {} answers: {e}", clickhouse_server()));
    assert!(r.status().is_success(), "{statement}");
    r.text().await.unwrap()
}

/// A TCP proxy to the ClickHouse server that a test switches off (every connection refused at
/// once, as a server that is down) and on again.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
}

impl Proxy {
    async fn start(to: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(false));
        let on = up.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !on.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let to = to.clone();
                tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&to).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Proxy { port, up }
    }

    fn switch(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }
}

/// With a ClickHouse sink and the reports read there, the figures still reconcile with orders
/// and payments, after ClickHouse was down while they were placed (the reports answered 503
/// meanwhile, and the sink waited); the orders are all in ClickHouse once each, and a rebuild
/// sends them again without changing a figure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_read_from_clickhouse_reconcile_too() {
    let database = support::unique("kassa_t");
    let server = clickhouse_server();
    let proxy = Proxy::start(server.trim_start_matches("http://").to_owned()).await;
    let url = format!("http://127.0.0.1:{}/{database}", proxy.port);
    let app = spawn_app_with(Backend::Embedded, SERVICES, |s| {
        s.options.set("clickhouse-url", url.clone());
        s.options.set("report-store", "clickhouse");
    })
    .await;
    // ClickHouse is down while the day's trade happens.
    let (tea, teas_sold) = a_day_of_trade(&app, 10, 5).await;
    let want = expected(&app).await;
    let range = around_today();
    let summary_path = format!("/api/v1/reports/reports/summary?{range}");
    let (status, down) = app.get(&summary_path).await;
    assert_eq!(
        (status, down["code"].as_str()),
        (503, Some("service_unavailable")),
        "{down}"
    );
    proxy.switch(true);
    eventually(
        "the summary read from ClickHouse reconciles with orders and payments",
        Duration::from_secs(60),
        async || app.get(&summary_path).await,
        |(status, body)| *status == 200 && figures(body) == want,
    )
    .await;
    let rows = clickhouse(
        &app.client,
        &format!("SELECT count() FROM {database}.order_facts FINAL"),
    )
    .await;
    assert_eq!(rows.trim(), want["orders"].to_string());

    let (status, favorites) = app
        .get(&format!("/api/v1/reports/reports/favorites?{range}"))
        .await;
    assert_eq!(status, 200, "{favorites}");
    if teas_sold > 0 {
        assert_eq!(favorites["byQuantity"][0]["productId"], tea.as_str());
        assert_eq!(favorites["byQuantity"][0]["quantity"], teas_sold);
    }
    let (status, trend) = app
        .get(&format!(
            "/api/v1/reports/reports/sales-trend?{range}&interval=day"
        ))
        .await;
    assert_eq!(status, 200, "{trend}");
    let orders: i64 = trend["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["orders"].as_i64().unwrap())
        .sum();
    assert_eq!(orders, want["orders"].as_i64().unwrap());
    let recent = all(
        &app,
        &format!("/api/v1/reports/reports/recent-orders?{range}"),
    )
    .await;
    assert_eq!(recent.len() as i64, want["orders"].as_i64().unwrap());
    let cancelled = all(
        &app,
        &format!("/api/v1/reports/reports/recent-orders?{range}&status=cancelled"),
    )
    .await;
    assert_eq!(cancelled.len() as i64, want["cancelled"].as_i64().unwrap());

    // A rebuild queues every order for ClickHouse again; the figures do not move.
    rebuild(&app);
    let queued = kassa::app::open_database(&app.settings, &kassa_analytics::SERVICE)
        .await
        .unwrap();
    eventually(
        "the sink sends every order again",
        Duration::from_secs(30),
        async || {
            kassa_platform::db::sql("SELECT COUNT(*) AS n FROM sink_queue")
                .fetch_one(&queued)
                .await
                .unwrap()
                .get::<i64>("n")
                .unwrap()
        },
        |n| *n == 0,
    )
    .await;
    queued.close().await;
    let (_, after) = app.get(&summary_path).await;
    assert_eq!(figures(&after), want);
    app.stop().await;
    clickhouse(
        &http_client(),
        &format!("DROP DATABASE IF EXISTS {database}"),
    )
    .await;
}

fn http_client() -> reqwest::Client {
    support::http_client()
}
