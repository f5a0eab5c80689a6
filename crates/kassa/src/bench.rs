//! `kassa bench`: drives checkouts against a running kassa through its gateway, as clients
//! would, and reports how fast orders are accepted and settled.
//!
//! Create→terminal latency is measured on the server's clock (an order's `updatedAt` minus its
//! `createdAt`), so polling for the outcome does not inflate it.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use futures_util::{StreamExt, stream};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The gateway's base URL.
    pub url: String,
    /// The API key every request shows (`X-Api-Key`).
    pub key: Option<String>,
    pub orders: usize,
    pub concurrency: usize,
    /// Orders per second to offer; as fast as possible when `None`.
    pub rate: Option<f64>,
    /// The amount of each order (decimal text).
    pub amount: String,
    /// How long to wait for the last order to settle.
    pub settle_timeout: Duration,
    pub progress: bool,
    /// A PostgreSQL URL to measure pgbench's single-row insert TPS on, for a ratio.
    pub pgbench: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub orders: usize,
    pub concurrency: usize,
    pub offered_rate: Option<f64>,
    pub accepted: usize,
    pub rejected: usize,
    pub accepted_per_sec: f64,
    pub terminal: usize,
    pub terminal_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub outcomes: BTreeMap<String, usize>,
    pub not_terminal: usize,
    pub pgbench_insert_tps: Option<f64>,
    /// Terminal orders per second divided by pgbench's single-row inserts per second.
    pub ratio_to_pgbench: Option<f64>,
    /// The gateway process's resident memory once the orders had settled (in a soak, 6 s later),
    /// from its `/metrics`.
    pub server_rss_bytes: Option<u64>,
}

/// Several rounds against one running process: whether it keeps its pace as work accumulates.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    pub rounds: Vec<BenchReport>,
    /// The last round's terminal orders/s over the first's.
    pub last_to_first_throughput: f64,
    /// The last round's p99 create→terminal over the first's.
    pub last_to_first_p99: f64,
    /// Server RSS after the last round over RSS after the second (after the first when there
    /// are fewer than three rounds, so warm-up is left out where it can be).
    pub rss_growth: Option<f64>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Accepted {
    order_id: Uuid,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderView {
    status: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn bar(len: usize, label: &str, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{prefix:>10} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_prefix(label.to_owned());
    pb
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// One round of `options.orders` orders.
pub async fn run(options: BenchOptions) -> anyhow::Result<BenchReport> {
    let (client, base, pgbench_tps) = prepare(&options).await?;
    round(&client, &base, &options, pgbench_tps, None).await
}

/// `rounds` rounds of `options.orders` orders each, one after another against the same process;
/// `each` is called with every round's report as it ends.
pub async fn soak(
    options: BenchOptions,
    rounds: usize,
    mut each: impl FnMut(usize, &BenchReport),
) -> anyhow::Result<SoakReport> {
    let (client, base, pgbench_tps) = prepare(&options).await?;
    let mut reports = Vec::with_capacity(rounds);
    for n in 1..=rounds.max(1) {
        let report = round(&client, &base, &options, pgbench_tps, Some(n)).await?;
        each(n, &report);
        reports.push(report);
    }
    let (first, last) = (&reports[0], &reports[reports.len() - 1]);
    let baseline = reports
        .get(1)
        .filter(|_| reports.len() > 2)
        .unwrap_or(first);
    Ok(SoakReport {
        last_to_first_throughput: last.terminal_per_sec / first.terminal_per_sec.max(1e-9),
        last_to_first_p99: last.p99_ms / first.p99_ms.max(1e-9),
        rss_growth: match (baseline.server_rss_bytes, last.server_rss_bytes) {
            (Some(before), Some(after)) if before > 0 => Some(after as f64 / before as f64),
            _ => None,
        },
        rounds: reports,
    })
}

async fn prepare(options: &BenchOptions) -> anyhow::Result<(reqwest::Client, String, Option<f64>)> {
    let base = options.url.trim_end_matches('/').to_owned();
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(key) = &options.key {
        let mut value = reqwest::header::HeaderValue::from_str(key.trim())
            .context("the API key (--key) is not one")?;
        value.set_sensitive(true);
        headers.insert("x-api-key", value);
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(options.concurrency.max(1))
        .timeout(Duration::from_secs(30))
        .default_headers(headers)
        .build()?;
    client
        .get(format!("{base}/health/live"))
        .send()
        .await
        .with_context(|| format!("no kassa answers at {base}"))?;
    // One order's worth of credentials: a run whose every order is refused for who it is
    // measures nothing.
    let probe = client
        .get(format!("{base}/api/orders/{}", Uuid::nil()))
        .send()
        .await
        .with_context(|| format!("no kassa answers at {base}"))?;
    if matches!(probe.status().as_u16(), 401 | 403) {
        bail!(
            "kassa at {base} refuses this caller ({}): give kassa bench an API key that may place \
             orders (--key or KASSA_BENCH_KEY; make one with `kassa keys create --role kiosk \
             --name bench`)",
            probe.status()
        );
    }
    let pgbench_tps = match &options.pgbench {
        Some(url) => Some(pgbench_insert_tps(url, options.concurrency.min(32)).await?),
        None => None,
    };
    Ok((client, base, pgbench_tps))
}

/// The resident memory the process behind `base` reports on `/metrics`.
async fn server_rss(client: &reqwest::Client, base: &str) -> Option<u64> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

async fn round(
    client: &reqwest::Client,
    base: &str,
    options: &BenchOptions,
    pgbench_tps: Option<f64>,
    number: Option<usize>,
) -> anyhow::Result<BenchReport> {
    let (client, base) = (client.clone(), base.to_owned());
    let body = format!(
        r#"{{"userId":"{}","total":{}}}"#,
        Uuid::new_v4(),
        options.amount
    );
    let label = |what: &str| match number {
        Some(n) => format!("{what} {n}"),
        None => what.to_owned(),
    };

    // Phase 1: place the orders.
    let created = bar(options.orders, &label("placing"), options.progress);
    let started = Instant::now();
    let interval = options
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(1.0 / r));
    let body = Arc::new(body);
    let results: Vec<Option<Uuid>> = stream::iter(0..options.orders)
        .map(|i| {
            let (client, base, body, created) =
                (client.clone(), base.clone(), body.clone(), created.clone());
            async move {
                if let Some(interval) = interval {
                    let due = started + interval * i as u32;
                    tokio::time::sleep_until(due.into()).await;
                }
                let response = client
                    .post(format!("{base}/api/orders"))
                    .header("content-type", "application/json")
                    .body(body.as_str().to_owned())
                    .send()
                    .await;
                created.inc(1);
                match response {
                    Ok(r) if r.status().as_u16() == 202 => {
                        r.json::<Accepted>().await.ok().map(|a| a.order_id)
                    }
                    _ => None,
                }
            }
        })
        .buffered(options.concurrency.max(1))
        .collect()
        .await;
    let placing = started.elapsed();
    created.finish_and_clear();
    let ids: Vec<Uuid> = results.iter().flatten().copied().collect();
    let accepted = ids.len();

    // Phase 2: wait for each order's outcome. Orders settle roughly in the order they were
    // placed, so only a window of the oldest unsettled ones is read at a time, and a window
    // that is not settled yet is read again after a pause: about one read per order, so the
    // benchmark does not load the system it measures with polling.
    let settling = bar(accepted, &label("settling"), options.progress);
    let deadline = Instant::now() + options.settle_timeout;
    let mut pending: std::collections::VecDeque<Uuid> = ids.into();
    let mut settled: Vec<OrderView> = Vec::with_capacity(accepted);
    let window = options.concurrency.max(1);
    while !pending.is_empty() && Instant::now() < deadline {
        let batch: Vec<Uuid> = pending.drain(..window.min(pending.len())).collect();
        let round: Vec<(Uuid, Option<OrderView>)> = stream::iter(batch)
            .map(|id| {
                let (client, base) = (client.clone(), base.clone());
                async move {
                    let view = match client.get(format!("{base}/api/orders/{id}")).send().await {
                        Ok(r) if r.status().is_success() => r.json::<OrderView>().await.ok(),
                        _ => None,
                    };
                    (id, view)
                }
            })
            .buffer_unordered(window)
            .collect()
            .await;
        let mut unsettled = Vec::new();
        for (id, view) in round {
            match view {
                Some(v) if matches!(v.status.as_str(), "PAID" | "FAILED" | "CANCELLED") => {
                    settled.push(v);
                    settling.inc(1);
                }
                _ => unsettled.push(id),
            }
        }
        if !unsettled.is_empty() {
            for id in unsettled.into_iter().rev() {
                pending.push_front(id);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    settling.finish_and_clear();

    let mut latencies: Vec<f64> = settled
        .iter()
        .map(|v| {
            (v.updated_at - v.created_at)
                .num_microseconds()
                .unwrap_or(0) as f64
                / 1000.0
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let mut outcomes = BTreeMap::new();
    for v in &settled {
        *outcomes.entry(v.status.clone()).or_insert(0) += 1;
    }
    let span = match (
        settled.iter().map(|v| v.created_at).min(),
        settled.iter().map(|v| v.updated_at).max(),
    ) {
        (Some(first), Some(last)) => {
            (last - first).num_microseconds().unwrap_or(1).max(1) as f64 / 1e6
        }
        _ => 1.0,
    };
    let terminal_per_sec = settled.len() as f64 / span;
    // In a soak, RSS is read once the process has had its moment to give memory freed by the
    // round back (it does every 5 s), so rounds compare what it holds, not its last garbage.
    if number.is_some() {
        tokio::time::sleep(Duration::from_secs(6)).await;
    }
    let server_rss_bytes = server_rss(&client, &base).await;
    Ok(BenchReport {
        orders: options.orders,
        concurrency: options.concurrency,
        offered_rate: options.rate,
        accepted,
        rejected: options.orders - accepted,
        accepted_per_sec: accepted as f64 / placing.as_secs_f64().max(1e-9),
        terminal: settled.len(),
        terminal_per_sec,
        p50_ms: percentile(&latencies, 50.0),
        p99_ms: percentile(&latencies, 99.0),
        max_ms: latencies.last().copied().unwrap_or(0.0),
        outcomes,
        not_terminal: pending.len(),
        pgbench_insert_tps: pgbench_tps,
        ratio_to_pgbench: pgbench_tps.map(|tps| terminal_per_sec / tps),
        server_rss_bytes,
    })
}

/// Single-row insert transactions per second that pgbench reaches on the same server, for 10 s
/// with `clients` connections.
async fn pgbench_insert_tps(url: &str, clients: usize) -> anyhow::Result<f64> {
    let script = std::env::temp_dir().join(format!("kassa-pgbench-{}.sql", std::process::id()));
    std::fs::write(
        &script,
        "INSERT INTO kassa_pgbench_insert (payload) VALUES ('checkout');\n",
    )?;
    let setup = tokio::process::Command::new("psql")
        .args([url, "-q", "-c", "CREATE TABLE IF NOT EXISTS kassa_pgbench_insert (id BIGSERIAL PRIMARY KEY, payload TEXT NOT NULL)"])
        .status()
        .await
        .context("running psql (is the PostgreSQL client installed?)")?;
    if !setup.success() {
        bail!("psql could not create the pgbench table");
    }
    let clients = clients.max(1).to_string();
    let out = tokio::process::Command::new("pgbench")
        .args(["-n", "-c", &clients, "-j", "2", "-T", "10", "-f"])
        .arg(&script)
        .arg(url)
        .output()
        .await
        .context("running pgbench")?;
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&out.stdout);
    let tps = text
        .lines()
        .find(|l| l.trim_start().starts_with("tps ="))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|n| n.parse::<f64>().ok())
        .with_context(|| {
            format!(
                "pgbench printed no tps: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    Ok(tps)
}

impl BenchReport {
    /// One line for a round of a soak.
    pub fn print_round(&self, n: usize) {
        println!(
            "round {n:>3}   terminal {:>6.0}/s   p99 {:>8.1} ms   not terminal {}   server RSS {}",
            self.terminal_per_sec,
            self.p99_ms,
            self.not_terminal,
            self.server_rss_bytes
                .map(|b| format!("{:.1} MB", b as f64 / 1e6))
                .unwrap_or_else(|| "unknown".into())
        );
    }

    pub fn print(&self) {
        println!(
            "orders        {} at concurrency {}{}",
            self.orders,
            self.concurrency,
            self.offered_rate
                .map(|r| format!(", offered {r:.0}/s"))
                .unwrap_or_default()
        );
        println!(
            "accepted      {} ({:.0}/s), rejected {}",
            self.accepted, self.accepted_per_sec, self.rejected
        );
        println!(
            "terminal      {} ({:.0}/s), not terminal {}",
            self.terminal, self.terminal_per_sec, self.not_terminal
        );
        println!(
            "create→terminal p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.p50_ms, self.p99_ms, self.max_ms
        );
        let outcomes: Vec<String> = self
            .outcomes
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!("outcomes      {}", outcomes.join(", "));
        if let (Some(tps), Some(ratio)) = (self.pgbench_insert_tps, self.ratio_to_pgbench) {
            println!(
                "pgbench       {tps:.0} single-row inserts/s; kassa terminal orders/s ÷ that = {ratio:.3}"
            );
        }
        if let Some(bytes) = self.server_rss_bytes {
            println!("server RSS    {:.1} MB", bytes as f64 / 1e6);
        }
    }
}

impl SoakReport {
    pub fn print_summary(&self) {
        println!(
            "last round ÷ first: throughput {:.2}, p99 {:.2}; RSS last ÷ {} {}",
            self.last_to_first_throughput,
            self.last_to_first_p99,
            if self.rounds.len() > 2 {
                "second"
            } else {
                "first"
            },
            self.rss_growth
                .map(|g| format!("{g:.2}"))
                .unwrap_or_else(|| "unknown".into())
        );
        if let Some(ratio) = self.rounds.first().and_then(|r| r.ratio_to_pgbench) {
            println!("first round's ratio to pgbench {ratio:.3}");
        }
    }
}
