//! Pickup codes: one per dispensable unit of a paid order, good for 15 minutes after issue,
//! redeemed at most once (one conditional update decides a race), only by a registered
//! dispenser. When the last unit of an order is handed out, `pickup.completed` is published,
//! once.

use chrono::{DateTime, Duration, Utc};
use kassa_contracts::{
    Envelope, EventContext,
    events::{OrderedLine, PickupCompleted},
};
use kassa_platform::{
    db::{Db, DbResult, Row, Tx, sql},
    outbox,
};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::NAME;

/// How long a code is good for after it is issued.
pub const LIFETIME: Duration = Duration::minutes(15);

/// A pickup code, as the kiosk shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Code {
    /// The code itself: what the QR image holds and the dispenser sends back.
    pub id: Uuid,
    pub order_id: Uuid,
    pub product_id: Uuid,
    /// Which unit of the product (1 to the quantity ordered).
    pub unit: i64,
    #[serde(serialize_with = "kassa_contracts::json::timestamp")]
    pub issued_at: DateTime<Utc>,
    #[serde(serialize_with = "kassa_contracts::json::timestamp")]
    pub expires_at: DateTime<Utc>,
    /// When a dispenser handed the unit out.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "kassa_contracts::json::optional_timestamp"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub redeemed_at: Option<DateTime<Utc>>,
    /// Its order was cancelled: it is no good.
    pub revoked: bool,
}

const COLUMNS: &str =
    "id, order_id, product_id, unit, issued_at, expires_at, redeemed_at, redeemed_by, revoked";

fn code_from(row: &Row) -> DbResult<Code> {
    Ok(Code {
        id: row.get("id")?,
        order_id: row.get("order_id")?,
        product_id: row.get("product_id")?,
        unit: row.get("unit")?,
        issued_at: row.get("issued_at")?,
        expires_at: row.get("expires_at")?,
        redeemed_at: row.get("redeemed_at")?,
        revoked: row.get("revoked")?,
    })
}

/// Records what `order_id` has to hand out (its dispensable lines); true when it has any.
pub async fn note_pickups(tx: &mut Tx, order_id: Uuid, lines: &[OrderedLine]) -> DbResult<bool> {
    let mut any = false;
    for line in lines.iter().filter(|l| l.is_dispensable && l.quantity > 0) {
        sql(
            "INSERT INTO pickups (order_id, product_id, name, quantity) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (order_id, product_id) DO NOTHING",
        )
        .bind(order_id)
        .bind(line.product_id)
        .bind(&line.name)
        .bind(line.quantity)
        .execute(&mut *tx)
        .await?;
        any = true;
    }
    Ok(any)
}

/// Whether qr knows `order_id` as a paid order with units to hand out.
pub async fn known(tx: &mut Tx, order_id: Uuid) -> DbResult<bool> {
    Ok(
        sql("SELECT 1 AS one FROM pickups WHERE order_id = $1 LIMIT 1")
            .bind(order_id)
            .fetch_optional(tx)
            .await?
            .is_some(),
    )
}

/// Every code of `order_id`, by product and unit, newest last.
pub async fn of_order(tx: &mut Tx, order_id: Uuid) -> DbResult<Vec<Code>> {
    let rows = kassa_platform::db::sql_assembled(format!(
        "SELECT {COLUMNS} FROM codes WHERE order_id = $1 ORDER BY product_id, unit, issued_at"
    ))
    .bind(order_id)
    .fetch_all(tx)
    .await?;
    rows.iter().map(code_from).collect()
}

/// Issues a code for each unit of `order_id` that is neither handed out nor covered by a code
/// still good at `now`; returns the codes good now (new and old), by product and unit. Nothing
/// for a cancelled order.
pub async fn issue(tx: &mut Tx, order_id: Uuid, now: DateTime<Utc>) -> DbResult<Vec<Code>> {
    let existing = of_order(tx, order_id).await?;
    if existing.iter().any(|c| c.revoked) {
        return Ok(Vec::new());
    }
    let units =
        sql("SELECT product_id, quantity FROM pickups WHERE order_id = $1 ORDER BY product_id")
            .bind(order_id)
            .fetch_all(&mut *tx)
            .await?;
    let mut good = Vec::new();
    for row in units {
        let product_id: Uuid = row.get("product_id")?;
        let quantity: i64 = row.get("quantity")?;
        for unit in 1..=quantity {
            let mine = existing
                .iter()
                .filter(|c| c.product_id == product_id && c.unit == unit);
            if mine.clone().any(|c| c.redeemed_at.is_some()) {
                continue;
            }
            if let Some(live) = mine.clone().find(|c| c.expires_at > now) {
                good.push(live.clone());
                continue;
            }
            let code = Code {
                id: Uuid::new_v4(),
                order_id,
                product_id,
                unit,
                issued_at: now,
                expires_at: now + LIFETIME,
                redeemed_at: None,
                revoked: false,
            };
            sql("INSERT INTO codes (id, order_id, product_id, unit, issued_at, expires_at, revoked) \
                 VALUES ($1, $2, $3, $4, $5, $6, FALSE)")
            .bind(code.id)
            .bind(order_id)
            .bind(product_id)
            .bind(unit)
            .bind(now)
            .bind(code.expires_at)
            .execute(&mut *tx)
            .await?;
            good.push(code);
        }
    }
    Ok(good)
}

/// The order was cancelled: none of its codes is any good.
pub async fn revoke(tx: &mut Tx, order_id: Uuid) -> DbResult<()> {
    sql("UPDATE codes SET revoked = TRUE WHERE order_id = $1 AND redeemed_at IS NULL")
        .bind(order_id)
        .execute(tx)
        .await?;
    Ok(())
}

/// Why a code was not redeemed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Unknown,
    Revoked,
    Used,
    Expired,
}

/// Redeems `code` for `device` at `now`: exactly one of any number of concurrent attempts
/// succeeds. On success, when it was the order's last unit, `pickup.completed` goes to the
/// outbox (once per order).
pub async fn redeem(
    db: &Db,
    code: Uuid,
    device: Uuid,
    now: DateTime<Utc>,
    ctx: &EventContext,
) -> Result<Result<Code, Refusal>, kassa_platform::http::ApiError> {
    let mut tx = db.begin().await?;
    let taken = sql("UPDATE codes SET redeemed_at = $1, redeemed_by = $2 \
                     WHERE id = $3 AND redeemed_at IS NULL AND NOT revoked AND expires_at > $1")
    .bind(now)
    .bind(device)
    .bind(code)
    .execute(&mut tx)
    .await?;
    let row =
        kassa_platform::db::sql_assembled(format!("SELECT {COLUMNS} FROM codes WHERE id = $1"))
            .bind(code)
            .fetch_optional(&mut tx)
            .await?;
    let Some(found) = row.as_ref().map(code_from).transpose()? else {
        return Ok(Err(Refusal::Unknown));
    };
    if taken != 1 {
        tx.rollback().await?;
        return Ok(Err(if found.revoked {
            Refusal::Revoked
        } else if found.redeemed_at.is_some() {
            Refusal::Used
        } else {
            Refusal::Expired
        }));
    }
    let units: i64 = sql(
        "SELECT CAST(COALESCE(SUM(quantity), 0) AS BIGINT) AS n FROM pickups WHERE order_id = $1",
    )
    .bind(found.order_id)
    .fetch_one(&mut tx)
    .await?
    .get("n")?;
    let handed: i64 =
        sql("SELECT COUNT(*) AS n FROM codes WHERE order_id = $1 AND redeemed_at IS NOT NULL")
            .bind(found.order_id)
            .fetch_one(&mut tx)
            .await?
            .get("n")?;
    if handed >= units {
        complete(&mut tx, found.order_id, now, ctx).await?;
    }
    tx.commit().await?;
    Ok(Ok(found))
}

/// Publishes `pickup.completed` for `order_id` unless it was already.
pub async fn complete(
    tx: &mut Tx,
    order_id: Uuid,
    now: DateTime<Utc>,
    ctx: &EventContext,
) -> DbResult<()> {
    let first = sql(
        "INSERT INTO completed_pickups (order_id, completed_at) VALUES ($1, $2) \
                     ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(order_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if first == 1 {
        let event = PickupCompleted { order_id };
        outbox::add(tx, &Envelope::new(NAME, order_id, &event, ctx)).await?;
    }
    Ok(())
}
