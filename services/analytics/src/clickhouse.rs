//! The scale path: the same order facts copied to ClickHouse over its HTTP interface, and the
//! reports' queries run there instead, when configuration says so.
//!
//! The copy works like an outbox. While a sink is configured, every batch that changes orders
//! also queues their ids (`sink_queue`, in the same transaction); the sink reads the queue,
//! sends those orders' current rows, and only then deletes what it sent. ClickHouse keeps the
//! newest row of each order (`ReplacingMergeTree` by the row's version, read with `FINAL`), so
//! a row sent twice (a crash between sending and deleting, two replicas) changes nothing. A
//! ClickHouse outage delays the copy; nothing is lost.

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, Utc};
use kassa_platform::{
    db::{Arg, Db, DbError, for_keys, sql},
    http::{Page, Pagination},
    shutdown::Shutdown,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::facts::{self, Line, OrderFacts, Sales, Status};

/// Why ClickHouse did not answer as asked.
#[derive(Debug, thiserror::Error)]
pub enum ChError {
    #[error("ClickHouse is unreachable: {0}")]
    Unreachable(String),
    #[error("ClickHouse refused a statement ({status}): {body}")]
    Refused { status: u16, body: String },
    #[error("ClickHouse answered something unreadable: {0}")]
    Unreadable(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// A ClickHouse database, reached over HTTP.
#[derive(Debug, Clone)]
pub struct ClickHouse {
    http: reqwest::Client,
    /// `http://host:8123/`
    base: String,
    database: String,
}

const SCHEMA: [&str; 1] = [
    "CREATE TABLE IF NOT EXISTS order_facts (order_id String, order_number Int64, \
     has_number UInt8, placed_at_us Int64, currency String, total_minor Int64, method String, \
     item String, lines String, paid_minor Int64, refunded_minor Int64, status String, \
     version UInt64) ENGINE = ReplacingMergeTree(version) ORDER BY order_id",
];
const LINES_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS order_lines (order_id String, \
     line UInt32, product_id String, name String, quantity Int64, unit_price_minor Int64, \
     placed_at_us Int64, currency String, sold UInt8, version UInt64) \
     ENGINE = ReplacingMergeTree(version) ORDER BY (order_id, line)";

impl ClickHouse {
    /// `http://host:8123/<database>`: the server's HTTP interface and the database to use
    /// (made if missing).
    pub fn new(url: &str) -> Result<Self, String> {
        // What errors show of the URL: its password is not repeated.
        let shown = kassa_platform::redact::url(url);
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("`{shown}` is not an http:// URL"))?;
        if scheme != "http" && scheme != "https" {
            return Err(format!("`{shown}` is not an http:// URL"));
        }
        let (host, database) = rest.split_once('/').unwrap_or((rest, ""));
        let database = database.trim_end_matches('/');
        if host.is_empty()
            || database.is_empty()
            || !database
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(format!(
                "`{shown}` must end in the database's name (letters, digits, _): http://host:8123/kassa"
            ));
        }
        kassa_platform::http::https_ready();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(ClickHouse {
            http,
            base: format!("{scheme}://{host}/"),
            database: database.to_owned(),
        })
    }

    async fn post(
        &self,
        query: Option<&str>,
        body: String,
        in_db: bool,
    ) -> Result<String, ChError> {
        let mut params: Vec<(&str, &str)> = vec![("output_format_json_quote_64bit_integers", "0")];
        if in_db {
            params.push(("database", &self.database));
        }
        if let Some(q) = query {
            params.push(("query", q));
        }
        let query =
            serde_urlencoded::to_string(&params).map_err(|e| ChError::Unreadable(e.to_string()))?;
        let r = self
            .http
            .post(format!("{}?{query}", self.base))
            .body(body)
            .send()
            .await
            .map_err(|e| ChError::Unreachable(e.without_url().to_string()))?;
        let status = r.status().as_u16();
        let text = r
            .text()
            .await
            .map_err(|e| ChError::Unreachable(e.without_url().to_string()))?;
        if status != 200 {
            return Err(ChError::Refused {
                status,
                body: text.chars().take(500).collect(),
            });
        }
        Ok(text)
    }

    /// Makes the database and its tables if missing.
    pub async fn ensure_schema(&self) -> Result<(), ChError> {
        self.post(
            None,
            format!("CREATE DATABASE IF NOT EXISTS {}", self.database),
            false,
        )
        .await?;
        for statement in SCHEMA.iter().chain([&LINES_SCHEMA]) {
            self.post(None, (*statement).to_owned(), true).await?;
        }
        Ok(())
    }

    /// The rows a `SELECT … FORMAT JSONEachRow` answers.
    async fn rows(&self, query: String) -> Result<Vec<serde_json::Map<String, Value>>, ChError> {
        let text = self
            .post(None, format!("{query} FORMAT JSONEachRow"), true)
            .await?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| match serde_json::from_str(l) {
                Ok(Value::Object(m)) => Ok(m),
                _ => Err(ChError::Unreadable(l.chars().take(200).collect())),
            })
            .collect()
    }

    async fn insert(&self, table: &str, rows: &[Value]) -> Result<(), ChError> {
        if rows.is_empty() {
            return Ok(());
        }
        let body: String = rows.iter().map(|r| format!("{r}\n")).collect();
        self.post(
            Some(&format!("INSERT INTO {table} FORMAT JSONEachRow")),
            body,
            true,
        )
        .await
        .map(|_| ())
    }

    /// Sends these orders' rows (and their lines).
    pub async fn send(&self, orders: &[(OrderFacts, DateTime<Utc>)]) -> Result<(), ChError> {
        let mut rows = Vec::new();
        let mut lines = Vec::new();
        for (o, updated_at) in orders {
            let Some(placed) = o.placed_at else { continue };
            let version = updated_at.timestamp_micros().max(0) as u64;
            let placed_at_us = placed.timestamp_micros();
            let currency = o.currency.clone().unwrap_or_default();
            rows.push(json!({
                "order_id": o.order_id.to_string(),
                "order_number": o.order_number.unwrap_or(0),
                "has_number": u8::from(o.order_number.is_some()),
                "placed_at_us": placed_at_us,
                "currency": currency,
                "total_minor": o.total_minor.unwrap_or(0),
                "method": o.method.clone().unwrap_or_default(),
                "item": o.item.clone().unwrap_or_default(),
                "lines": serde_json::to_string(&o.lines).unwrap_or_else(|_| "[]".into()),
                "paid_minor": o.paid_minor,
                "refunded_minor": o.refunded_minor,
                "status": o.status().as_str(),
                "version": version,
            }));
            let sold = u8::from(matches!(o.status(), Status::Paid | Status::Completed));
            for (i, l) in o.lines.iter().enumerate() {
                lines.push(json!({
                    "order_id": o.order_id.to_string(),
                    "line": i,
                    "product_id": l.product_id.to_string(),
                    "name": l.name,
                    "quantity": l.quantity,
                    "unit_price_minor": l.unit_price_minor,
                    "placed_at_us": placed_at_us,
                    "currency": currency,
                    "sold": sold,
                    "version": version,
                }));
            }
        }
        self.insert("order_lines", &lines).await?;
        self.insert("order_facts", &rows).await
    }

    /// The sums of each slot of `first..end` (slots of [`crate::period::SLOT_SECONDS`]).
    pub async fn slot_sales(
        &self,
        first: i64,
        end: i64,
        currency: Option<&str>,
    ) -> Result<Vec<(i64, String, Sales)>, ChError> {
        let unit = crate::period::SLOT_SECONDS * 1_000_000;
        let rows = self
            .rows(format!(
                "SELECT intDiv(placed_at_us, {unit}) AS slot, currency, count() AS orders, \
                 countIf(status = 'PENDING') AS pending, countIf(status = 'PAID') AS paid, \
                 countIf(status = 'COMPLETED') AS completed, countIf(status = 'FAILED') AS failed, \
                 countIf(status = 'CANCELLED') AS cancelled, countIf(paid_minor > 0) AS paid_orders, \
                 sum(paid_minor) AS revenue, countIf(refunded_minor > 0) AS refunded_orders, \
                 sum(refunded_minor) AS refunds FROM order_facts FINAL \
                 WHERE placed_at_us >= {} AND placed_at_us < {}{} GROUP BY slot, currency",
                first * unit,
                end * unit,
                currency_filter(currency)
            ))
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    int(r, "slot")?,
                    text(r, "currency")?,
                    Sales {
                        orders: int(r, "orders")?,
                        pending: int(r, "pending")?,
                        paid: int(r, "paid")?,
                        completed: int(r, "completed")?,
                        failed: int(r, "failed")?,
                        cancelled: int(r, "cancelled")?,
                        paid_orders: int(r, "paid_orders")?,
                        revenue_minor: int(r, "revenue")?,
                        refunded_orders: int(r, "refunded_orders")?,
                        refunds_minor: int(r, "refunds")?,
                    },
                ))
            })
            .collect()
    }

    /// Every product sold in `first..end`, with its units and revenue.
    pub async fn product_sales(
        &self,
        first: i64,
        end: i64,
        currency: Option<&str>,
    ) -> Result<Vec<crate::reports::ProductFigures>, ChError> {
        let unit = crate::period::SLOT_SECONDS * 1_000_000;
        let rows = self
            .rows(format!(
                "SELECT product_id, currency, any(name) AS product_name, sum(quantity) AS units, \
                 sum(quantity * unit_price_minor) AS revenue FROM order_lines FINAL \
                 WHERE sold = 1 AND placed_at_us >= {} AND placed_at_us < {}{} \
                 GROUP BY product_id, currency HAVING units > 0",
                first * unit,
                end * unit,
                currency_filter(currency)
            ))
            .await?;
        rows.iter()
            .map(|r| {
                Ok(crate::reports::ProductFigures {
                    product_id: uuid(r, "product_id")?,
                    name: text(r, "product_name")?,
                    currency: text(r, "currency")?,
                    quantity: int(r, "units")?,
                    revenue_minor: int(r, "revenue")?,
                })
            })
            .collect()
    }

    /// Orders placed in `since..until`, newest first, a page at a time.
    pub async fn recent_orders(
        &self,
        pagination: Pagination,
        since: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
        status: Option<Status>,
        currency: Option<&str>,
    ) -> Result<Page<OrderFacts>, ChError> {
        let mut filter = format!("placed_at_us >= {}", since.timestamp_micros());
        if let Some(u) = until {
            filter.push_str(&format!(" AND placed_at_us < {}", u.timestamp_micros()));
        }
        if let Some(s) = status {
            filter.push_str(&format!(" AND status = '{}'", s.as_str()));
        }
        filter.push_str(&currency_filter(currency));
        let rows = self
            .rows(format!(
                "SELECT order_id, order_number, has_number, placed_at_us, currency, total_minor, \
                 method, item, lines, paid_minor, refunded_minor, status FROM order_facts FINAL \
                 WHERE {filter} ORDER BY placed_at_us DESC, order_id DESC LIMIT {} OFFSET {}",
                pagination.limit,
                pagination.offset()
            ))
            .await?;
        let total = self
            .rows(format!(
                "SELECT count() AS n FROM order_facts FINAL WHERE {filter}"
            ))
            .await?
            .first()
            .map(|r| int(r, "n"))
            .transpose()?
            .unwrap_or(0);
        let data = rows.iter().map(order_from).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::new(data, pagination, total))
    }
}

/// ` AND currency = 'USD'`: a code the API has checked (three ASCII letters).
fn currency_filter(currency: Option<&str>) -> String {
    match currency {
        Some(c) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()) => {
            format!(" AND currency = '{c}'")
        }
        _ => String::new(),
    }
}

fn unreadable(field: &str) -> ChError {
    ChError::Unreadable(format!("column {field}"))
}

/// A number, written as a JSON number or (64-bit integers, by default) a string.
fn int(r: &serde_json::Map<String, Value>, field: &str) -> Result<i64, ChError> {
    match r.get(field) {
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| unreadable(field)),
        Some(Value::String(s)) => s.parse().map_err(|_| unreadable(field)),
        _ => Err(unreadable(field)),
    }
}

fn text(r: &serde_json::Map<String, Value>, field: &str) -> Result<String, ChError> {
    r.get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| unreadable(field))
}

fn uuid(r: &serde_json::Map<String, Value>, field: &str) -> Result<Uuid, ChError> {
    text(r, field)?.parse().map_err(|_| unreadable(field))
}

fn order_from(r: &serde_json::Map<String, Value>) -> Result<OrderFacts, ChError> {
    let status = Status::parse(&text(r, "status")?).ok_or_else(|| unreadable("status"))?;
    let some = |s: String| (!s.is_empty()).then_some(s);
    let lines: Vec<Line> =
        serde_json::from_str(&text(r, "lines")?).map_err(|_| unreadable("lines"))?;
    Ok(OrderFacts {
        order_id: uuid(r, "order_id")?,
        order_number: (int(r, "has_number")? == 1)
            .then(|| int(r, "order_number"))
            .transpose()?,
        placed_at: Some(
            DateTime::from_timestamp_micros(int(r, "placed_at_us")?)
                .ok_or_else(|| unreadable("placed_at_us"))?,
        ),
        currency: some(text(r, "currency")?),
        total_minor: Some(int(r, "total_minor")?),
        method: some(text(r, "method")?),
        item: some(text(r, "item")?),
        lines,
        paid_minor: int(r, "paid_minor")?,
        refunded_minor: int(r, "refunded_minor")?,
        paid: matches!(status, Status::Paid | Status::Completed),
        failed: status == Status::Failed,
        cancelled: status == Status::Cancelled,
        completed: status == Status::Completed,
    })
}

/// Orders queued for the sink at a time.
const SHIP_BATCH: i64 = 2000;

/// Sends what the queue holds; answers how many orders were sent.
pub async fn ship(db: &Db, ch: &ClickHouse) -> Result<usize, ChError> {
    let queued = sql("SELECT seq, order_id FROM sink_queue ORDER BY seq LIMIT $1")
        .bind(SHIP_BATCH)
        .fetch_all(db)
        .await?;
    if queued.is_empty() {
        return Ok(0);
    }
    let mut seqs: Vec<i64> = Vec::with_capacity(queued.len());
    let mut ids: Vec<Uuid> = Vec::with_capacity(queued.len());
    for row in &queued {
        seqs.push(row.get("seq")?);
        ids.push(row.get("order_id")?);
    }
    ids.sort();
    ids.dedup();
    let rows = for_keys(
        db,
        &format!(
            "SELECT {}, updated_at FROM order_facts WHERE order_id IN",
            facts::COLUMNS
        ),
        "",
        Vec::new(),
        ids.iter().copied(),
    )
    .await?;
    let orders = rows
        .iter()
        .map(|r| Ok((OrderFacts::from_row(r)?, r.get("updated_at")?)))
        .collect::<Result<Vec<_>, DbError>>()?;
    ch.send(&orders).await?;
    let sent: Vec<Arg> = seqs.into_iter().map(Arg::from).collect();
    for_keys(
        db,
        "DELETE FROM sink_queue WHERE seq IN",
        "",
        Vec::new(),
        sent,
    )
    .await?;
    Ok(ids.len())
}

/// Queues every order, for a sink that starts on data it has never sent (and after a rebuild).
pub async fn queue_all(tx: &mut kassa_platform::db::Tx) -> Result<(), DbError> {
    sql("INSERT INTO sink_queue (order_id) SELECT order_id FROM order_facts WHERE placed_at IS NOT NULL")
        .execute(tx)
        .await?;
    Ok(())
}

/// Ships the queue to ClickHouse until shutdown: first the schema, and every order once when
/// the sink has never run on this database; then whatever batches queue. An outage is retried
/// with a growing wait.
pub async fn sink(db: Db, ch: ClickHouse, shutdown: Shutdown) {
    let mut wait = Duration::from_millis(250);
    let mut ready = false;
    loop {
        let step: Result<usize, ChError> = async {
            if !ready {
                ch.ensure_schema().await?;
                let mut tx = db.begin().await?;
                let started = sql("SELECT name FROM sink_state WHERE name = 'clickhouse'")
                    .fetch_optional(&mut tx)
                    .await?;
                if started.is_none() {
                    queue_all(&mut tx).await?;
                    sql("INSERT INTO sink_state (name, started_at) VALUES ('clickhouse', $1)")
                        .bind(kassa_contracts::now())
                        .execute(&mut tx)
                        .await?;
                }
                tx.commit().await?;
                ready = true;
            }
            ship(&db, &ch).await
        }
        .await;
        let pause = match step {
            Ok(n) if n > 0 => {
                wait = Duration::from_millis(250);
                Duration::ZERO
            }
            Ok(_) => Duration::from_millis(250),
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "the ClickHouse sink waits");
                let w = wait;
                wait = (wait * 2).min(Duration::from_secs(30));
                w
            }
        };
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// Sums of slots, folded by currency (for a summary).
pub fn by_currency(rows: &[(i64, String, Sales)]) -> BTreeMap<String, Sales> {
    let mut out: BTreeMap<String, Sales> = BTreeMap::new();
    for (_, c, s) in rows {
        out.entry(c.clone()).or_default().add_all(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_names_the_server_and_its_database() {
        let ch = ClickHouse::new("http://127.0.0.1:8123/kassa_reports").unwrap();
        assert_eq!(ch.base, "http://127.0.0.1:8123/");
        assert_eq!(ch.database, "kassa_reports");
        for bad in [
            "127.0.0.1:8123/kassa",
            "http://127.0.0.1:8123",
            "http://127.0.0.1:8123/",
            "http://h/x;DROP",
            "ftp://h/x",
        ] {
            assert!(ClickHouse::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn currencies_only_reach_a_statement_checked() {
        assert_eq!(currency_filter(Some("USD")), " AND currency = 'USD'");
        assert_eq!(currency_filter(Some("U'D")), "");
        assert_eq!(currency_filter(None), "");
    }
}
