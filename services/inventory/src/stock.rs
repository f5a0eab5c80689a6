//! Stock and how it moves. A product's units are available to order, reserved for an order
//! not yet completed, or sold; each change moves units between those (or in and out of the
//! shop) under the item's row lock, writes a movement row and, when the units available cross
//! the low-stock threshold downwards, `stock.low`. Nothing here goes below zero: the checks are
//! made under the lock and the table's `CHECK`s back them.

use chrono::{DateTime, Utc};
use kassa_contracts::{
    Envelope, EventContext,
    events::{OrderItem, ReservationExpired, StockLow},
};
use kassa_platform::{
    db::{Db, DbResult, Row, Tx, sql, sql_assembled},
    http::{ApiError, ApiResult},
    outbox,
};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::NAME;

kassa_contracts::status_enum! {
    /// Why units moved.
    pub enum Reason {
        /// Units came in (a delivery, a count that found more).
        Restock = "RESTOCK",
        /// Units went out other than by sale (damaged, lost, a count that found fewer).
        WriteOff = "WRITE_OFF",
        /// Available units were held for an order.
        Reserved = "RESERVED",
        /// An order's held units are available again (it failed or was cancelled).
        Released = "RELEASED",
        /// An order's hold ran out before it was paid.
        Expired = "EXPIRED",
        /// Units were handed out for a completed order.
        Sold = "SOLD",
    }
}

kassa_contracts::status_enum! {
    /// Where an order's hold on a product stands.
    pub enum Hold {
        /// Held until `expiresAt` unless paid first.
        Held = "HELD",
        /// Paid for: held until the order completes, whatever the time.
        Kept = "KEPT",
        Sold = "SOLD",
        Released = "RELEASED",
        Expired = "EXPIRED",
    }
}

/// A status as its text.
fn as_text<S: serde::Serializer>(value: &impl std::fmt::Display, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// A product's stock (the seed's inventory item).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    /// The inventory id (`/api/Inventory/{id}`).
    pub id: Uuid,
    pub product_id: Uuid,
    pub product_name: String,
    /// Units on hand that are not sold: available plus reserved.
    pub quantity: i64,
    /// Units that can be ordered now.
    pub available: i64,
    /// Units held for orders not yet completed.
    pub reserved: i64,
    /// Units handed out for completed orders.
    pub sold: i64,
    /// `stock.low` is published when `available` falls to this or below.
    pub low_stock_threshold: i64,
    #[serde(serialize_with = "kassa_contracts::json::timestamp")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "kassa_contracts::json::timestamp")]
    pub updated_at: DateTime<Utc>,
    #[serde(skip)]
    pub low: bool,
}

pub const ITEM_COLUMNS: &str = "id, product_id, product_name, available, reserved, sold, \
     low_stock_threshold, low, created_at, updated_at";

pub fn item_from(row: &Row) -> DbResult<Item> {
    let available: i64 = row.get("available")?;
    let reserved: i64 = row.get("reserved")?;
    Ok(Item {
        id: row.get("id")?,
        product_id: row.get("product_id")?,
        product_name: row.get("product_name")?,
        quantity: available + reserved,
        available,
        reserved,
        sold: row.get("sold")?,
        low_stock_threshold: row.get("low_stock_threshold")?,
        low: row.get("low")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
    })
}

/// One change of a product's stock.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Movement {
    pub id: Uuid,
    pub inventory_id: Uuid,
    pub product_id: Uuid,
    #[schema(value_type = String, example = "RESERVED")]
    #[serde(serialize_with = "as_text")]
    pub reason: Reason,
    /// Units moved, above zero; `reason` says from where to where.
    pub quantity: i64,
    /// The item's units available after the movement.
    pub available: i64,
    /// Its units reserved after it.
    pub reserved: i64,
    /// Its units sold after it.
    pub sold: i64,
    /// The order it was for, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<Uuid>,
    /// Who moved them: `admin:<id>`, `customer:<id>`, `service:<id>`, `anonymous`, or the event
    /// that did (`event:order.completed`).
    pub by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(serialize_with = "kassa_contracts::json::timestamp")]
    pub created_at: DateTime<Utc>,
}

pub const MOVEMENT_COLUMNS: &str = "id, inventory_id, product_id, reason, quantity, available, \
     reserved, sold, order_id, actor, note, created_at";

pub fn movement_from(row: &Row) -> DbResult<Movement> {
    Ok(Movement {
        id: row.get("id")?,
        inventory_id: row.get("inventory_id")?,
        product_id: row.get("product_id")?,
        reason: row.parsed("reason")?,
        quantity: row.get("quantity")?,
        available: row.get("available")?,
        reserved: row.get("reserved")?,
        sold: row.get("sold")?,
        order_id: row.get("order_id")?,
        by: row.get("actor")?,
        note: row.get("note")?,
        created_at: row.get("created_at")?,
    })
}

/// Who or what moves stock, and in answer to which request or event.
#[derive(Debug, Clone)]
pub struct Mover {
    pub by: String,
    pub ctx: EventContext,
}

/// The stock of product `product_id`, made (empty) when there is none yet, as the catalog
/// announces products.
pub async fn ensure(tx: &mut Tx, product_id: Uuid, name: &str) -> DbResult<()> {
    let now = kassa_contracts::now();
    sql(
        "INSERT INTO stock (id, product_id, product_name, available, reserved, sold, \
         low_stock_threshold, low, version, created_at, updated_at) \
         VALUES ($1, $2, $3, 0, 0, 0, 0, FALSE, 1, $4, $4) ON CONFLICT (product_id) DO NOTHING",
    )
    .bind(Uuid::now_v7())
    .bind(product_id)
    .bind(name)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sql("UPDATE stock SET product_name = $1 WHERE product_id = $2 AND product_name <> $1")
        .bind(name)
        .bind(product_id)
        .execute(tx)
        .await?;
    Ok(())
}

/// The item `id`, locked for the rest of `tx`.
pub async fn lock(db: &Db, tx: &mut Tx, id: Uuid) -> DbResult<Option<Item>> {
    let row = sql_assembled(format!(
        "SELECT {ITEM_COLUMNS} FROM stock WHERE id = $1{}",
        db.for_update()
    ))
    .bind(id)
    .fetch_optional(tx)
    .await?;
    row.as_ref().map(item_from).transpose()
}

/// The item of product `product_id`, locked for the rest of `tx`.
pub async fn lock_product(db: &Db, tx: &mut Tx, product_id: Uuid) -> DbResult<Option<Item>> {
    let row = sql_assembled(format!(
        "SELECT {ITEM_COLUMNS} FROM stock WHERE product_id = $1{}",
        db.for_update()
    ))
    .bind(product_id)
    .fetch_optional(tx)
    .await?;
    row.as_ref().map(item_from).transpose()
}

/// Moves `quantity` units of `item` (locked in `tx`) for `reason`: changes its counts, writes
/// the movement and, on a downward crossing of the threshold, `stock.low`. The caller has
/// checked that the units are there; the table's `CHECK`s refuse the change if they are not.
pub async fn moved(
    tx: &mut Tx,
    item: &mut Item,
    reason: Reason,
    quantity: i64,
    order_id: Option<Uuid>,
    mover: &Mover,
    note: Option<&str>,
) -> ApiResult<Movement> {
    match reason {
        Reason::Restock => item.available += quantity,
        Reason::WriteOff => item.available -= quantity,
        Reason::Reserved => {
            item.available -= quantity;
            item.reserved += quantity;
        }
        Reason::Released | Reason::Expired => {
            item.reserved -= quantity;
            item.available += quantity;
        }
        Reason::Sold => {
            item.reserved -= quantity;
            item.sold += quantity;
        }
    }
    if item.available < 0 || item.reserved < 0 {
        // The callers check first: only a bug gets here.
        return Err(ApiError::internal());
    }
    item.quantity = item.available + item.reserved;
    let now = kassa_contracts::now();
    item.updated_at = now.max(item.updated_at);
    let crossed_down = !item.low && item.available <= item.low_stock_threshold;
    // Back above the threshold: the next fall is a crossing again.
    item.low = item.available <= item.low_stock_threshold;
    save(tx, item).await?;
    let movement = Movement {
        id: Uuid::now_v7(),
        inventory_id: item.id,
        product_id: item.product_id,
        reason,
        quantity,
        available: item.available,
        reserved: item.reserved,
        sold: item.sold,
        order_id,
        by: mover.by.clone(),
        note: note.map(str::to_owned),
        created_at: now,
    };
    sql(
        "INSERT INTO stock_movements (id, inventory_id, product_id, reason, quantity, available, \
         reserved, sold, order_id, actor, note, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(movement.id)
    .bind(movement.inventory_id)
    .bind(movement.product_id)
    .bind(reason.as_str())
    .bind(quantity)
    .bind(movement.available)
    .bind(movement.reserved)
    .bind(movement.sold)
    .bind(order_id)
    .bind(&movement.by)
    .bind(note)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if crossed_down {
        announce_low(tx, item, &mover.ctx).await?;
    }
    Ok(movement)
}

/// Writes `item`'s counts, threshold and flag.
pub async fn save(tx: &mut Tx, item: &Item) -> DbResult<()> {
    sql(
        "UPDATE stock SET available = $1, reserved = $2, sold = $3, low_stock_threshold = $4, \
         low = $5, version = version + 1, updated_at = $6 WHERE id = $7",
    )
    .bind(item.available)
    .bind(item.reserved)
    .bind(item.sold)
    .bind(item.low_stock_threshold)
    .bind(item.low)
    .bind(item.updated_at)
    .bind(item.id)
    .execute(tx)
    .await?;
    Ok(())
}

pub async fn announce_low(tx: &mut Tx, item: &Item, ctx: &EventContext) -> DbResult<()> {
    let event = StockLow {
        inventory_id: item.id,
        product_id: item.product_id,
        product_name: item.product_name.clone(),
        available: item.available,
        low_stock_threshold: item.low_stock_threshold,
    };
    outbox::add(tx, &Envelope::new(NAME, item.id, &event, ctx)).await
}

/// A 409 naming the product whose stock is short.
pub fn short(product_id: Uuid, wanted: i64, available: i64) -> ApiError {
    ApiError::conflict(
        "insufficient_stock",
        format!("Product {product_id} has {available} units available; {wanted} were asked for."),
    )
    .with_param("items")
}

/// One line of an order's hold.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeldLine {
    pub product_id: Uuid,
    pub quantity: i64,
    #[schema(value_type = String, example = "HELD")]
    #[serde(serialize_with = "as_text")]
    pub status: Hold,
    #[serde(serialize_with = "kassa_contracts::json::timestamp")]
    pub expires_at: DateTime<Utc>,
}

/// The lines an order holds, in product order, locked for the rest of `tx`.
pub async fn holds(db: &Db, tx: &mut Tx, order_id: Uuid) -> DbResult<Vec<HeldLine>> {
    let rows = sql_assembled(format!(
        "SELECT product_id, quantity, status, expires_at FROM reservations \
         WHERE order_id = $1 ORDER BY product_id{}",
        db.for_update()
    ))
    .bind(order_id)
    .fetch_all(tx)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(HeldLine {
                product_id: r.get("product_id")?,
                quantity: r.get("quantity")?,
                status: r.parsed("status")?,
                expires_at: r.get("expires_at")?,
            })
        })
        .collect()
}

/// An order's items with each product once (quantities added), in product order: the order
/// items are locked in, so two orders never wait on each other.
pub fn merged(items: &[OrderItem]) -> Vec<OrderItem> {
    let mut by_product = std::collections::BTreeMap::new();
    for item in items {
        *by_product.entry(item.product_id).or_insert(0) += item.quantity;
    }
    by_product
        .into_iter()
        .map(|(product_id, quantity)| OrderItem {
            product_id,
            quantity,
        })
        .collect()
}

/// Holds `items` for `order_id` until `expires_at`. All or nothing: a product short of units
/// refuses the whole order (409 naming it). The same order asking again for the same items is
/// answered with its hold as it stands; asking for other items is a 409.
pub async fn reserve(
    db: &Db,
    tx: &mut Tx,
    order_id: Uuid,
    items: &[OrderItem],
    expires_at: DateTime<Utc>,
    mover: &Mover,
) -> ApiResult<(bool, Vec<HeldLine>)> {
    let wanted = merged(items);
    let existing = holds(db, tx, order_id).await?;
    if !existing.is_empty() {
        let same = existing.len() == wanted.len()
            && existing
                .iter()
                .zip(&wanted)
                .all(|(h, w)| h.product_id == w.product_id && h.quantity == w.quantity);
        return if same {
            Ok((false, existing))
        } else {
            Err(ApiError::conflict(
                "reservation_exists",
                "This order already holds other items; release it first.",
            )
            .with_param("orderId"))
        };
    }
    let now = kassa_contracts::now();
    let mut lines = Vec::with_capacity(wanted.len());
    for w in &wanted {
        let Some(mut item) = lock_product(db, tx, w.product_id).await? else {
            return Err(short(w.product_id, w.quantity, 0));
        };
        if item.available < w.quantity {
            return Err(short(w.product_id, w.quantity, item.available));
        }
        moved(
            tx,
            &mut item,
            Reason::Reserved,
            w.quantity,
            Some(order_id),
            mover,
            None,
        )
        .await?;
        sql(
            "INSERT INTO reservations (order_id, product_id, quantity, status, expires_at, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(order_id)
        .bind(w.product_id)
        .bind(w.quantity)
        .bind(Hold::Held.as_str())
        .bind(expires_at)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        lines.push(HeldLine {
            product_id: w.product_id,
            quantity: w.quantity,
            status: Hold::Held,
            expires_at,
        });
    }
    Ok((true, lines))
}

async fn set_status(tx: &mut Tx, order_id: Uuid, product_id: Uuid, status: Hold) -> DbResult<()> {
    sql("UPDATE reservations SET status = $1, updated_at = $2 WHERE order_id = $3 AND product_id = $4")
        .bind(status.as_str())
        .bind(kassa_contracts::now())
        .bind(order_id)
        .bind(product_id)
        .execute(tx)
        .await?;
    Ok(())
}

/// Gives what `order_id` still holds back to sale, as `reason` (released or expired); returns
/// how many lines it gave back.
pub async fn release(
    db: &Db,
    tx: &mut Tx,
    order_id: Uuid,
    reason: Reason,
    mover: &Mover,
) -> ApiResult<usize> {
    let status = if reason == Reason::Expired {
        Hold::Expired
    } else {
        Hold::Released
    };
    let mut released = 0;
    for line in holds(db, tx, order_id).await? {
        if !matches!(line.status, Hold::Held | Hold::Kept) {
            continue;
        }
        if let Some(mut item) = lock_product(db, tx, line.product_id).await? {
            moved(
                tx,
                &mut item,
                reason,
                line.quantity,
                Some(order_id),
                mover,
                None,
            )
            .await?;
        }
        set_status(tx, order_id, line.product_id, status).await?;
        released += 1;
    }
    Ok(released)
}

/// The order was paid: what it holds is kept for it until it completes, past any expiry. A
/// line whose hold ran out as the payment went through is held again when the units are
/// still there (the order is paid: it goes ahead).
pub async fn keep(db: &Db, tx: &mut Tx, order_id: Uuid, mover: &Mover) -> ApiResult<()> {
    for line in holds(db, tx, order_id).await? {
        match line.status {
            Hold::Held => {}
            Hold::Expired => {
                let Some(mut item) = lock_product(db, tx, line.product_id).await? else {
                    continue;
                };
                if item.available < line.quantity {
                    tracing::warn!(%order_id, product_id = %line.product_id,
                        "a paid order's hold expired and its units were sold since");
                    continue;
                }
                moved(
                    tx,
                    &mut item,
                    Reason::Reserved,
                    line.quantity,
                    Some(order_id),
                    mover,
                    Some("held again: paid as its hold expired"),
                )
                .await?;
            }
            Hold::Kept | Hold::Sold | Hold::Released => continue,
        }
        set_status(tx, order_id, line.product_id, Hold::Kept).await?;
    }
    Ok(())
}

/// The order completed with `items`: what it holds is sold. An item it does not hold (or holds
/// fewer of) is sold from the units available, as many as there are: stock never goes below
/// zero, and a shortfall is noted on the movement.
pub async fn sell(
    db: &Db,
    tx: &mut Tx,
    order_id: Uuid,
    items: &[OrderItem],
    mover: &Mover,
) -> ApiResult<()> {
    let held = holds(db, tx, order_id).await?;
    for w in merged(items) {
        let Some(mut item) = lock_product(db, tx, w.product_id).await? else {
            tracing::warn!(%order_id, product_id = %w.product_id, "a completed order names a product without stock");
            continue;
        };
        let line = held
            .iter()
            .find(|h| h.product_id == w.product_id && matches!(h.status, Hold::Held | Hold::Kept));
        let from_hold = line.map_or(0, |l| l.quantity.min(w.quantity));
        if from_hold > 0 {
            moved(
                tx,
                &mut item,
                Reason::Sold,
                from_hold,
                Some(order_id),
                mover,
                None,
            )
            .await?;
        }
        if let Some(line) = line {
            if line.quantity > from_hold {
                // Held more than was sold: the rest goes back on sale.
                let rest = line.quantity - from_hold;
                moved(
                    tx,
                    &mut item,
                    Reason::Released,
                    rest,
                    Some(order_id),
                    mover,
                    None,
                )
                .await?;
            }
            set_status(tx, order_id, w.product_id, Hold::Sold).await?;
        }
        let unheld = w.quantity - from_hold;
        if unheld > 0 {
            let take = unheld.min(item.available);
            if take > 0 {
                // Reserve and sell at once, so the counts move as for any sale.
                moved(
                    tx,
                    &mut item,
                    Reason::Reserved,
                    take,
                    Some(order_id),
                    mover,
                    None,
                )
                .await?;
                moved(
                    tx,
                    &mut item,
                    Reason::Sold,
                    take,
                    Some(order_id),
                    mover,
                    Some("sold without a reservation"),
                )
                .await?;
            }
            if take < unheld {
                tracing::warn!(%order_id, product_id = %w.product_id, short = unheld - take,
                    "a completed order was handed more units than the stock held");
            }
        }
    }
    // Lines of the hold that the completed order did not name go back on sale.
    for line in held
        .iter()
        .filter(|h| matches!(h.status, Hold::Held | Hold::Kept))
    {
        if items.iter().any(|i| i.product_id == line.product_id) {
            continue;
        }
        if let Some(mut item) = lock_product(db, tx, line.product_id).await? {
            moved(
                tx,
                &mut item,
                Reason::Released,
                line.quantity,
                Some(order_id),
                mover,
                None,
            )
            .await?;
        }
        set_status(tx, order_id, line.product_id, Hold::Released).await?;
    }
    Ok(())
}

/// Gives back what orders held past their expiry at `now` without being paid, at most `limit`
/// orders, each with `reservation.expired`; returns how many orders it expired.
pub async fn expire(db: &Db, now: DateTime<Utc>, limit: i64) -> ApiResult<usize> {
    let rows = sql("SELECT DISTINCT order_id FROM reservations WHERE status = $1 AND expires_at <= $2 LIMIT $3")
        .bind(Hold::Held.as_str())
        .bind(now)
        .bind(limit)
        .fetch_all(db)
        .await?;
    let mut expired = 0;
    for row in rows {
        let order_id: Uuid = row.get("order_id")?;
        let mut tx = db.begin().await?;
        // Paid (kept) or released since it was read: nothing to do.
        let lines = holds(db, &mut tx, order_id).await?;
        if !lines
            .iter()
            .any(|l| l.status == Hold::Held && l.expires_at <= now)
        {
            tx.rollback().await?;
            continue;
        }
        let ctx = EventContext::new(format!("expiry-{order_id}"));
        let mover = Mover {
            by: "expiry".into(),
            ctx: ctx.clone(),
        };
        release(db, &mut tx, order_id, Reason::Expired, &mover).await?;
        let event = ReservationExpired { order_id };
        outbox::add(&mut tx, &Envelope::new(NAME, order_id, &event, &ctx)).await?;
        tx.commit().await?;
        expired += 1;
    }
    Ok(expired)
}
