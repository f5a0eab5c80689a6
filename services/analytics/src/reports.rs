//! The four reports of seed 002, read from the read models: sums over the quarter-hour slots a
//! period covers, never a scan of the orders themselves (but for the recent orders' page).

use std::collections::BTreeMap;

use kassa_platform::{
    db::{Db, DbResult, sql_assembled},
    http::{Page, Pagination},
    listing::{Filters, Listing},
};
use uuid::Uuid;

use crate::{
    facts::{self, OrderFacts, Sales, Status},
    period::{Bucket, Period, bucket_of, slot_start},
};

/// The sums of a period, one entry per currency.
pub async fn sales(
    db: &Db,
    period: &Period,
    currency: Option<&str>,
) -> DbResult<BTreeMap<String, Sales>> {
    let (first, end) = period.slots();
    let filter = if currency.is_some() {
        " AND currency = $3"
    } else {
        ""
    };
    let sum = |c: &str| format!("CAST(SUM({c}) AS BIGINT) AS {c}");
    let columns = [
        "orders",
        "pending",
        "paid",
        "completed",
        "failed",
        "cancelled",
        "paid_orders",
        "revenue_minor",
        "refunded_orders",
        "refunds_minor",
    ];
    let mut q = sql_assembled(format!(
        "SELECT currency, {} FROM sales_slots WHERE slot >= $1 AND slot < $2{filter} GROUP BY currency",
        columns.map(sum).join(", ")
    ))
    .bind(first)
    .bind(end);
    if let Some(c) = currency {
        q = q.bind(c);
    }
    let mut out = BTreeMap::new();
    for row in q.fetch_all(db).await? {
        let s = Sales {
            orders: row.get("orders")?,
            pending: row.get("pending")?,
            paid: row.get("paid")?,
            completed: row.get("completed")?,
            failed: row.get("failed")?,
            cancelled: row.get("cancelled")?,
            paid_orders: row.get("paid_orders")?,
            revenue_minor: row.get("revenue_minor")?,
            refunded_orders: row.get("refunded_orders")?,
            refunds_minor: row.get("refunds_minor")?,
        };
        out.insert(row.get("currency")?, s);
    }
    Ok(out)
}

/// How many events of each type came in the period.
pub async fn activity(db: &Db, period: &Period) -> DbResult<BTreeMap<String, i64>> {
    let (first, end) = period.slots();
    let rows = sql_assembled(
        "SELECT event_type, CAST(SUM(events) AS BIGINT) AS events FROM activity_slots \
         WHERE slot >= $1 AND slot < $2 GROUP BY event_type"
            .into(),
    )
    .bind(first)
    .bind(end)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| Ok((r.get("event_type")?, r.get("events")?)))
        .collect()
}

/// One product's sales in a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductFigures {
    pub product_id: Uuid,
    pub name: String,
    pub currency: String,
    pub quantity: i64,
    pub revenue_minor: i64,
}

/// What ranks best sellers.
#[derive(Debug, Clone, Copy)]
pub enum Rank {
    Quantity,
    Revenue,
}

/// The `top` best-selling products of a period.
pub async fn favorites(
    db: &Db,
    period: &Period,
    currency: Option<&str>,
    rank: Rank,
    top: u32,
) -> DbResult<Vec<ProductFigures>> {
    let (first, end) = period.slots();
    let filter = if currency.is_some() {
        " AND currency = $4"
    } else {
        ""
    };
    let order = match rank {
        Rank::Quantity => "t.quantity DESC, t.revenue_minor DESC, t.product_id",
        Rank::Revenue => "t.revenue_minor DESC, t.quantity DESC, t.product_id",
    };
    let mut q = sql_assembled(format!(
        "SELECT t.product_id, t.currency, t.quantity, t.revenue_minor, n.name FROM (\
           SELECT product_id, currency, CAST(SUM(quantity) AS BIGINT) AS quantity, \
                  CAST(SUM(revenue_minor) AS BIGINT) AS revenue_minor \
           FROM product_slots WHERE slot >= $1 AND slot < $2{filter} \
           GROUP BY product_id, currency HAVING SUM(quantity) > 0) t \
         LEFT JOIN products n ON n.product_id = t.product_id \
         ORDER BY {order} LIMIT $3"
    ))
    .bind(first)
    .bind(end)
    .bind(i64::from(top));
    if let Some(c) = currency {
        q = q.bind(c);
    }
    q.fetch_all(db)
        .await?
        .iter()
        .map(|r| {
            Ok(ProductFigures {
                product_id: r.get("product_id")?,
                name: r.get::<Option<String>>("name")?.unwrap_or_default(),
                currency: r.get("currency")?,
                quantity: r.get("quantity")?,
                revenue_minor: r.get("revenue_minor")?,
            })
        })
        .collect()
}

/// The period's buckets with the sums of each, by currency.
pub async fn trend(
    db: &Db,
    period: &Period,
    buckets: &[Bucket],
    currency: Option<&str>,
) -> DbResult<Vec<BTreeMap<String, Sales>>> {
    let (first, end) = period.slots();
    let filter = if currency.is_some() {
        " AND currency = $3"
    } else {
        ""
    };
    let mut q = sql_assembled(format!(
        "SELECT slot, currency, orders, pending, paid, completed, failed, cancelled, paid_orders, \
         revenue_minor, refunded_orders, refunds_minor FROM sales_slots \
         WHERE slot >= $1 AND slot < $2{filter}"
    ))
    .bind(first)
    .bind(end);
    if let Some(c) = currency {
        q = q.bind(c);
    }
    let mut rows = Vec::new();
    for row in q.fetch_all(db).await? {
        let s = Sales {
            orders: row.get("orders")?,
            pending: row.get("pending")?,
            paid: row.get("paid")?,
            completed: row.get("completed")?,
            failed: row.get("failed")?,
            cancelled: row.get("cancelled")?,
            paid_orders: row.get("paid_orders")?,
            revenue_minor: row.get("revenue_minor")?,
            refunded_orders: row.get("refunded_orders")?,
            refunds_minor: row.get("refunds_minor")?,
        };
        rows.push((row.get("slot")?, row.get("currency")?, s));
    }
    Ok(fold(buckets, rows))
}

/// Slots' sums added up by bucket and currency.
pub fn fold(
    buckets: &[Bucket],
    rows: impl IntoIterator<Item = (i64, String, Sales)>,
) -> Vec<BTreeMap<String, Sales>> {
    let mut out: Vec<BTreeMap<String, Sales>> = vec![BTreeMap::new(); buckets.len()];
    for (slot, currency, s) in rows {
        if let Some(i) = bucket_of(buckets, slot) {
            out[i].entry(currency).or_default().add_all(&s);
        }
    }
    out
}

/// The instants a period (or all time) covers, for the recent orders.
pub fn instants(
    period: Option<&Period>,
) -> (
    chrono::DateTime<chrono::Utc>,
    Option<chrono::DateTime<chrono::Utc>>,
) {
    match period {
        Some(p) => {
            let (first, end) = p.slots();
            (slot_start(first), Some(slot_start(end)))
        }
        // Orders whose `order.created` has not been seen yet have no time and are not listed.
        None => (chrono::DateTime::<chrono::Utc>::UNIX_EPOCH, None),
    }
}

const RECENT: Listing = Listing {
    table: "order_facts",
    columns: std::borrow::Cow::Borrowed(facts::COLUMNS),
    order_by: "placed_at DESC, order_id DESC",
};

/// Orders placed in the period (or ever), newest first.
pub async fn recent_orders(
    db: &Db,
    pagination: Pagination,
    period: Option<&Period>,
    status: Option<Status>,
    currency: Option<&str>,
) -> DbResult<Page<OrderFacts>> {
    let (start, end) = instants(period);
    let filters = Filters::new()
        .at_least("placed_at", Some(start))
        .below("placed_at", end)
        .equal("status", status.map(Status::as_str))
        .equal("currency", currency);
    RECENT
        .page(db, pagination, &filters, OrderFacts::from_row)
        .await
}
