//! Orders in the orders database.

use chrono::{DateTime, Utc};
use std::borrow::Cow;

use kassa_platform::{
    db::{Arg, Db, DbResult, Row, Tx, for_keys, for_rows, sql, sql_assembled},
    http::{Page, Pagination},
    listing::{Filters, Listing},
};
use uuid::Uuid;

use crate::domain::{Order, OrderStatus};

/// The columns an order is read from, as a literal so queries can be `concat!`ed at compile time.
macro_rules! columns {
    () => {
        "id, number, user_id, total_minor, currency, status, failure_reason, item, created_at, updated_at"
    };
}

/// Orders, newest first.
const LISTING: Listing = Listing {
    table: "orders",
    columns: Cow::Borrowed(columns!()),
    order_by: "created_at DESC, id DESC",
};

fn order_from(row: &Row) -> DbResult<Order> {
    Ok(Order {
        id: row.get("id")?,
        number: row.get("number")?,
        user_id: row.get("user_id")?,
        total: row.money("total_minor", "currency")?,
        status: row.parsed("status")?,
        failure_reason: row.get("failure_reason")?,
        item: row.get("item")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
    })
}

/// Takes `count` order numbers: the next ones of the sequence, in order. A number taken by a
/// transaction that rolls back is not handed out again.
pub async fn next_numbers(target: &mut Tx, count: usize) -> DbResult<Vec<i64>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    if target.is_postgres() {
        let rows = sql("SELECT nextval('order_numbers') AS n FROM generate_series(1, $1)")
            .bind(count as i64)
            .fetch_all(&mut *target)
            .await?;
        let mut numbers = rows
            .iter()
            .map(|r| r.get::<i64>("n"))
            .collect::<DbResult<Vec<_>>>()?;
        numbers.sort_unstable();
        Ok(numbers)
    } else {
        let last: i64 = sql("UPDATE order_numbers SET last = last + $1 RETURNING last")
            .bind(count as i64)
            .fetch_one(&mut *target)
            .await?
            .get("last")?;
        Ok((last - count as i64 + 1..=last).collect())
    }
}

/// Gives each new order of `placed` its number (seed 001's `orderID`), in `tx`, and says it in
/// its `order.created` event, so that payments knows it too. Orders that have one keep it.
pub async fn number<'a>(
    tx: &mut Tx,
    placed: impl IntoIterator<Item = (&'a mut Order, &'a mut kassa_contracts::Envelope)>,
) -> DbResult<()> {
    let mut placed: Vec<_> = placed.into_iter().collect();
    let unnumbered = placed.iter().filter(|(o, _)| o.number == 0).count();
    let mut numbers = next_numbers(tx, unnumbered).await?.into_iter();
    for (order, event) in &mut placed {
        if order.number == 0 {
            order.number = numbers.next().unwrap_or_default();
        }
        kassa_contracts::events::OrderCreated::set_number(event, order.number);
    }
    Ok(())
}

/// The order numbered `number`.
pub async fn find_by_number(db: &Db, number: i64) -> DbResult<Option<Order>> {
    let row = sql(concat!(
        "SELECT ",
        columns!(),
        " FROM orders WHERE number = $1"
    ))
    .bind(number)
    .fetch_optional(db)
    .await?;
    row.as_ref().map(order_from).transpose()
}

/// Orders but the cancelled, highest number first: seed 001's view.
const NUMBERED: Listing = Listing {
    table: "(SELECT * FROM orders WHERE status <> 'CANCELLED') AS numbered",
    columns: Cow::Borrowed(columns!()),
    order_by: "number DESC",
};

/// One page of `owner`'s orders (everyone's when `None`) in seed 001's view, with how many
/// there are in all.
pub async fn numbered_page(
    db: &Db,
    pagination: Pagination,
    owner: Option<Uuid>,
) -> DbResult<Page<Order>> {
    let filters = Filters::new().equal("user_id", owner);
    NUMBERED.page(db, pagination, &filters, order_from).await
}

pub async fn insert(tx: &mut Tx, order: &Order) -> DbResult<()> {
    insert_all(tx, [order]).await
}

/// Inserts many orders with a few multi-row statements. Each must have its number ([`number`]).
pub async fn insert_all(tx: &mut Tx, orders: impl IntoIterator<Item = &Order>) -> DbResult<()> {
    let orders: Vec<&Order> = orders.into_iter().collect();
    if let Some(o) = orders.iter().find(|o| o.number < 1) {
        return Err(kassa_platform::db::DbError::column(
            "number",
            format!("order {} is stored without its number", o.id),
        ));
    }
    let rows = orders
        .into_iter()
        .map(|o| {
            vec![
                Arg::from(o.id),
                Arg::from(o.number),
                Arg::from(o.user_id),
                Arg::from(o.total.minor()),
                Arg::from(o.total.currency().code()),
                Arg::from(o.status.as_str()),
                Arg::from(o.failure_reason.clone()),
                Arg::from(o.item.clone()),
                Arg::from(o.created_at),
                Arg::from(o.updated_at),
            ]
        })
        .collect();
    for_rows(
        tx,
        concat!("INSERT INTO orders (", columns!(), ")"),
        "",
        rows,
    )
    .await?;
    Ok(())
}

/// Stores the lines of order `order_id`.
pub async fn insert_lines(
    tx: &mut Tx,
    order_id: Uuid,
    lines: &[crate::items::Line],
) -> DbResult<()> {
    for (i, line) in lines.iter().enumerate() {
        sql("INSERT INTO order_lines (order_id, line, product_id, name, unit_price_minor, quantity, \
             is_dispensable) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(order_id)
        .bind(i as i64)
        .bind(line.product_id)
        .bind(&line.name)
        .bind(line.unit_price.minor())
        .bind(line.quantity)
        .bind(line.is_dispensable)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// The lines of order `order`, in the order they were placed (none for an order by total).
pub async fn lines(db: &Db, order: &Order) -> DbResult<Vec<crate::items::Line>> {
    let rows = sql(
        "SELECT product_id, name, unit_price_minor, quantity, is_dispensable \
                    FROM order_lines WHERE order_id = $1 ORDER BY line",
    )
    .bind(order.id)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            let minor: i64 = r.get("unit_price_minor")?;
            Ok(crate::items::Line {
                product_id: r.get("product_id")?,
                name: r.get("name")?,
                unit_price: kassa_contracts::Money::from_minor(minor, order.total.currency())
                    .map_err(|e| {
                        kassa_platform::db::DbError::column("unit_price_minor", e.to_string())
                    })?,
                quantity: r.get("quantity")?,
                is_dispensable: r.get("is_dispensable")?,
            })
        })
        .collect()
}

pub async fn find(db: &Db, id: Uuid) -> DbResult<Option<Order>> {
    let row = sql(concat!("SELECT ", columns!(), " FROM orders WHERE id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await?;
    row.as_ref().map(order_from).transpose()
}

/// Reads an order and locks it for the rest of `tx`.
pub async fn find_for_update(db: &Db, tx: &mut Tx, id: Uuid) -> DbResult<Option<Order>> {
    let row = sql_assembled(format!(
        concat!("SELECT ", columns!(), " FROM orders WHERE id = $1{}"),
        db.for_update()
    ))
    .bind(id)
    .fetch_optional(tx)
    .await?;
    row.as_ref().map(order_from).transpose()
}

/// Reads orders by id and locks them, in id order, for the rest of `tx`.
pub async fn find_all_for_update(db: &Db, tx: &mut Tx, ids: &[Uuid]) -> DbResult<Vec<Order>> {
    let rows = for_keys(
        tx,
        concat!("SELECT ", columns!(), " FROM orders WHERE id IN"),
        &format!(" ORDER BY id{}", db.for_update()),
        Vec::new(),
        ids.iter().copied(),
    )
    .await?;
    rows.iter().map(order_from).collect()
}

/// One page of `owner`'s orders (everyone's when `None`), newest first, with how many there
/// are in all.
pub async fn page(db: &Db, pagination: Pagination, owner: Option<Uuid>) -> DbResult<Page<Order>> {
    let filters = Filters::new().equal("user_id", owner);
    LISTING.page(db, pagination, &filters, order_from).await
}

/// Gives the orders `ids` one status (and reason) at once.
pub async fn set_status_all(
    tx: &mut Tx,
    ids: &[Uuid],
    status: OrderStatus,
    reason: Option<&str>,
    at: DateTime<Utc>,
) -> DbResult<()> {
    for_keys(
        tx,
        "UPDATE orders SET status = $1, failure_reason = COALESCE($2, failure_reason), updated_at = $3 WHERE id IN",
        "",
        vec![Arg::from(status.as_str()), Arg::from(reason), Arg::from(at)],
        ids.iter().copied(),
    )
    .await?;
    Ok(())
}

pub async fn set_status(
    tx: &mut Tx,
    id: Uuid,
    status: OrderStatus,
    reason: Option<&str>,
    at: DateTime<Utc>,
) -> DbResult<()> {
    set_status_all(tx, &[id], status, reason, at).await
}
