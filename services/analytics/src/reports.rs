//! The four reports of seed 002, read from the read models: sums over the quarter-hour slots a
//! period covers, never a scan of the orders themselves (but for the recent orders' page).

use std::collections::BTreeMap;

use kassa_platform::{
    db::{Db, DbResult, Row, sql_assembled},
    http::{Page, Pagination},
    listing::{Filters, Listing},
};
use uuid::Uuid;

use crate::{
    facts::{self, OrderFacts, Sales, Status},
    period::{Bucket, Period, bucket_of, slot_start},
};

/// A row of sums, its columns named as `sales_slots` names them.
fn sales_from(row: &Row) -> DbResult<Sales> {
    Ok(Sales {
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
    })
}

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
        let s = sales_from(&row)?;
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

/// The `top` products of `all` by `rank`, ties broken by the other figure, then by id.
pub fn best(mut all: Vec<ProductFigures>, rank: Rank, top: u32) -> Vec<ProductFigures> {
    all.sort_by(|a, b| {
        let key = |p: &ProductFigures| match rank {
            Rank::Quantity => (p.quantity, p.revenue_minor),
            Rank::Revenue => (p.revenue_minor, p.quantity),
        };
        key(b).cmp(&key(a)).then(a.product_id.cmp(&b.product_id))
    });
    all.truncate(top as usize);
    all
}

/// Every product sold in a period, with its units and revenue (one scan serves both rankings).
pub async fn product_sales(
    db: &Db,
    period: &Period,
    currency: Option<&str>,
) -> DbResult<Vec<ProductFigures>> {
    let (first, end) = period.slots();
    let filter = if currency.is_some() {
        " AND currency = $3"
    } else {
        ""
    };
    let mut q = sql_assembled(format!(
        "SELECT t.product_id, t.currency, t.quantity, t.revenue_minor, n.name FROM (\
           SELECT product_id, currency, CAST(SUM(quantity) AS BIGINT) AS quantity, \
                  CAST(SUM(revenue_minor) AS BIGINT) AS revenue_minor \
           FROM product_slots WHERE slot >= $1 AND slot < $2{filter} \
           GROUP BY product_id, currency HAVING SUM(quantity) > 0) t \
         LEFT JOIN products n ON n.product_id = t.product_id"
    ))
    .bind(first)
    .bind(end);
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
        let s = sales_from(&row)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_sellers_rank_by_one_figure_then_the_other_then_id() {
        let p = |id: u128, quantity, revenue_minor| ProductFigures {
            product_id: Uuid::from_u128(id),
            name: String::new(),
            currency: "USD".into(),
            quantity,
            revenue_minor,
        };
        let all = vec![p(1, 5, 100), p(2, 9, 50), p(3, 5, 300), p(4, 5, 300)];
        let ids =
            |v: Vec<ProductFigures>| v.iter().map(|p| p.product_id.as_u128()).collect::<Vec<_>>();
        assert_eq!(ids(best(all.clone(), Rank::Quantity, 3)), [2, 3, 4]);
        assert_eq!(ids(best(all, Rank::Revenue, 10)), [3, 4, 1, 2]);
    }
}
