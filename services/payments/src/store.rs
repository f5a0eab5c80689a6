//! Payments in the payments database.

use std::{
    borrow::Cow,
    collections::{HashMap, HashSet},
    time::Duration,
};

use chrono::{DateTime, Utc};
use kassa_contracts::{Currency, EventContext};
use kassa_platform::{
    db::{Arg, Db, DbError, DbResult, Lease, Row, Tx, for_keys, for_rows, sql, sql_assembled},
    http::{Page, Pagination},
    listing::{Filters, Listing},
};
use uuid::Uuid;

use crate::domain::{Payment, PaymentStatus, RefundKind};

/// The columns a payment is read from, as a literal so queries can be `concat!`ed at compile time.
macro_rules! columns {
    () => {
        "id, order_id, order_number, user_id, amount_minor, currency, status, reason, provider_reference, saved_card, item, method, created_at, updated_at"
    };
}

fn payment_from(row: &Row) -> DbResult<Payment> {
    Ok(Payment {
        id: row.get("id")?,
        order_id: row.get("order_id")?,
        order_number: row.get("order_number")?,
        user_id: row.get("user_id")?,
        amount: row.money("amount_minor", "currency")?,
        status: row.parsed("status")?,
        reason: row.get("reason")?,
        provider_reference: row.get("provider_reference")?,
        saved_card: row.get("saved_card")?,
        item: row.get("item")?,
        method: row
            .get::<Option<String>>("method")?
            .map(|m| {
                crate::domain::InPerson::parse(&m)
                    .ok_or_else(|| DbError::column("method", format!("unknown method {m}")))
            })
            .transpose()?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
    })
}

/// The flow a row's work belongs to, from its `correlation_id` and `causation_id`.
fn context_of(row: &Row) -> DbResult<EventContext> {
    Ok(EventContext {
        correlation_id: row.get("correlation_id")?,
        causation_id: row.get("causation_id")?,
    })
}

fn later(lease: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(30))
}

/// Inserts many payments (each with the flow it belongs to) with a few multi-row statements,
/// skipping those whose order has one already; returns the ids of those inserted.
pub async fn insert_all(
    tx: &mut Tx,
    payments: &[(Payment, EventContext)],
    lease: Duration,
) -> DbResult<HashSet<Uuid>> {
    let until = later(lease);
    let rows = payments
        .iter()
        .map(|(p, context)| {
            let locked_until = (p.status == PaymentStatus::Processing).then_some(until);
            vec![
                Arg::from(p.id),
                Arg::from(p.order_id),
                Arg::from(p.order_number),
                Arg::from(p.user_id),
                Arg::from(p.amount.minor()),
                Arg::from(p.amount.currency().code()),
                Arg::from(p.status.as_str()),
                Arg::from(p.reason.clone()),
                Arg::from(p.provider_reference.clone()),
                Arg::from(p.saved_card),
                Arg::from(p.item.clone()),
                Arg::from(p.method.map(|m| m.as_str())),
                Arg::from(p.created_at),
                Arg::from(p.updated_at),
                Arg::from(locked_until),
                Arg::from(context.correlation_id.as_str()),
                Arg::from(context.causation_id),
            ]
        })
        .collect();
    let inserted = for_rows(
        tx,
        concat!(
            "INSERT INTO payments (",
            columns!(),
            ", locked_until, correlation_id, causation_id)"
        ),
        "ON CONFLICT (order_id) DO NOTHING RETURNING id",
        rows,
    )
    .await?;
    inserted.iter().map(|r| r.get("id")).collect()
}

/// The payments of numbered orders, highest order number first: seed 001's view.
const NUMBERED: Listing = Listing {
    table: "(SELECT * FROM payments WHERE order_number IS NOT NULL) AS numbered",
    columns: Cow::Borrowed(columns!()),
    order_by: "order_number DESC",
};

/// One page of `owner`'s payments (everyone's when `None`) in seed 001's view, with how many
/// there are in all.
pub async fn numbered_page(
    db: &Db,
    pagination: Pagination,
    owner: Option<Uuid>,
) -> DbResult<Page<Payment>> {
    let filters = Filters::new().equal("user_id", owner);
    NUMBERED.page(db, pagination, &filters, payment_from).await
}

pub async fn find(db: &Db, id: Uuid) -> DbResult<Option<Payment>> {
    let row = sql(concat!(
        "SELECT ",
        columns!(),
        " FROM payments WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(db)
    .await?;
    row.as_ref().map(payment_from).transpose()
}

pub async fn find_by_order(db: &Db, order_id: Uuid) -> DbResult<Option<Payment>> {
    let row = sql(concat!(
        "SELECT ",
        columns!(),
        " FROM payments WHERE order_id = $1"
    ))
    .bind(order_id)
    .fetch_optional(db)
    .await?;
    row.as_ref().map(payment_from).transpose()
}

/// Reads a payment and locks it for the rest of `tx`.
pub async fn find_for_update(db: &Db, tx: &mut Tx, id: Uuid) -> DbResult<Option<Payment>> {
    let row = sql_assembled(format!(
        concat!("SELECT ", columns!(), " FROM payments WHERE id = $1{}"),
        db.for_update()
    ))
    .bind(id)
    .fetch_optional(tx)
    .await?;
    row.as_ref().map(payment_from).transpose()
}

/// Orders' payments, newest first.
const CHECKOUT: Listing = Listing {
    table: "payments",
    columns: Cow::Borrowed(columns!()),
    order_by: "created_at DESC, id DESC",
};

/// One page of orders' payments, newest first: `owner`'s (everyone's when `None`).
pub async fn page(db: &Db, pagination: Pagination, owner: Option<Uuid>) -> DbResult<Page<Payment>> {
    let filters = Filters::new().equal("user_id", owner);
    CHECKOUT.page(db, pagination, &filters, payment_from).await
}

/// Changes how a PENDING in-person payment (read for update in `tx`) is made.
pub async fn set_method(
    tx: &mut Tx,
    payment: &Payment,
    method: crate::domain::InPerson,
) -> DbResult<Payment> {
    let at = kassa_contracts::now().max(payment.updated_at);
    sql("UPDATE payments SET method = $1, updated_at = $2 WHERE id = $3")
        .bind(method.as_str())
        .bind(at)
        .bind(payment.id)
        .execute(tx)
        .await?;
    let mut changed = payment.clone();
    changed.method = Some(method);
    changed.updated_at = at;
    Ok(changed)
}

/// Reads an order's payment and locks it for the rest of `tx`.
pub async fn find_by_order_for_update(
    db: &Db,
    tx: &mut Tx,
    order_id: Uuid,
) -> DbResult<Option<Payment>> {
    let row = sql_assembled(format!(
        concat!(
            "SELECT ",
            columns!(),
            " FROM payments WHERE order_id = $1{}"
        ),
        db.for_update()
    ))
    .bind(order_id)
    .fetch_optional(tx)
    .await?;
    row.as_ref().map(payment_from).transpose()
}

/// Both kinds of payment, newest first: those of checkouts and those recorded by hand. The
/// database merges the two tables' newest-first indexes, so a page reads only its rows.
const ALL: Listing = Listing {
    table: "(SELECT id, 'checkout' AS kind, order_id, NULL AS member_id, amount_minor, currency, \
        status, reason, method AS payment_method, NULL AS paid_at, created_at, updated_at, user_id \
        FROM payments \
        UNION ALL SELECT id, 'manual' AS kind, NULL AS order_id, member_id, amount_minor, currency, \
        status, NULL AS reason, payment_method, paid_at, created_at, updated_at, NULL AS user_id \
        FROM manual_payments) AS all_payments",
    columns: Cow::Borrowed(
        "id, kind, order_id, member_id, amount_minor, currency, status, reason, payment_method, \
         paid_at, created_at, updated_at",
    ),
    order_by: "created_at DESC, id DESC",
};

/// A payment of either kind, as a list shows it.
pub struct Listed {
    pub id: Uuid,
    /// `checkout` or `manual`.
    pub kind: String,
    pub order_id: Option<Uuid>,
    pub member_id: Option<Uuid>,
    pub amount: kassa_contracts::Money,
    pub status: String,
    pub reason: Option<String>,
    pub payment_method: Option<String>,
    pub paid_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn listed_from(row: &Row) -> DbResult<Listed> {
    Ok(Listed {
        id: row.get("id")?,
        kind: row.get("kind")?,
        order_id: row.get("order_id")?,
        member_id: row.get("member_id")?,
        amount: row.money("amount_minor", "currency")?,
        status: row.get("status")?,
        reason: row.get("reason")?,
        payment_method: row.get("payment_method")?,
        paid_at: row.get("paid_at")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
    })
}

/// One page of payments of both kinds, newest first, with how many there are in all; only
/// `owner`'s (checkout payments of their orders) when given.
pub async fn page_all(
    db: &Db,
    pagination: Pagination,
    owner: Option<Uuid>,
) -> DbResult<Page<Listed>> {
    let filters = Filters::new().equal("user_id", owner);
    ALL.page(db, pagination, &filters, listed_from).await
}

/// Count and sum of payments per status and currency.
pub struct StatusTotal {
    pub status: PaymentStatus,
    pub currency: Currency,
    pub count: i64,
    pub total_minor: i64,
}

pub async fn totals_by_status(db: &Db) -> DbResult<Vec<StatusTotal>> {
    let rows = sql("SELECT status, currency, COUNT(*) AS n, CAST(SUM(amount_minor) AS BIGINT) AS total FROM payments GROUP BY status, currency ORDER BY status, currency")
        .fetch_all(db)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(StatusTotal {
                status: row.parsed("status")?,
                currency: row.parsed("currency")?,
                count: row.get("n")?,
                total_minor: row.get("total")?,
            })
        })
        .collect()
}

/// Moves `payment` from its status to `to` and returns it as stored; `None` if it was no longer
/// in the status it was read with.
#[must_use = "a refused transition must be handled"]
pub async fn transition(
    tx: &mut Tx,
    payment: &Payment,
    to: PaymentStatus,
    reason: Option<&str>,
    reference: Option<&str>,
) -> DbResult<Option<Payment>> {
    let at = kassa_contracts::now();
    let changed = sql(
        "UPDATE payments SET status = $1, reason = COALESCE($2, reason), provider_reference = COALESCE($3, provider_reference),
         locked_until = NULL, updated_at = $4 WHERE id = $5 AND status = $6",
    )
    .bind(to.as_str())
    .bind(reason)
    .bind(reference)
    .bind(at)
    .bind(payment.id)
    .bind(payment.status.as_str())
    .execute(tx)
    .await?;
    if changed != 1 {
        return Ok(None);
    }
    let mut now = payment.clone();
    now.status = to;
    if reason.is_some() {
        now.reason = reason.map(str::to_owned);
    }
    if reference.is_some() {
        now.provider_reference = reference.map(str::to_owned);
    }
    now.updated_at = at;
    Ok(Some(now))
}

/// A provider's decision about a PROCESSING payment, to be recorded.
pub struct Settled<'a> {
    pub id: Uuid,
    pub status: PaymentStatus,
    pub reason: Option<&'a str>,
    pub reference: Option<&'a str>,
}

/// Moves PROCESSING payments to their settled status at `now` with a few statements; returns the
/// ids of those that were still PROCESSING (the others were cancelled meanwhile). Each id once.
pub async fn settle_all<'a>(
    tx: &mut Tx,
    settled: impl IntoIterator<Item = &'a Settled<'a>>,
    now: DateTime<Utc>,
) -> DbResult<HashSet<Uuid>> {
    let rows = settled
        .into_iter()
        .map(|s| {
            vec![
                Arg::from(s.id),
                Arg::from(s.status.as_str()),
                Arg::from(s.reason),
                Arg::from(s.reference),
                Arg::from(now),
            ]
        })
        .collect();
    let changed = for_rows(
        tx,
        "WITH decided (payment_id, new_status, new_reason, new_reference, decided_at) AS (",
        ") UPDATE payments SET status = new_status, reason = COALESCE(new_reason, reason),
           provider_reference = COALESCE(new_reference, provider_reference), locked_until = NULL,
           updated_at = decided_at
         FROM decided WHERE id = payment_id AND status = 'PROCESSING' RETURNING id",
        rows,
    )
    .await?;
    changed.iter().map(|r| r.get("id")).collect()
}

/// Which of `ids` are CANCELLED, read inside `tx`.
pub async fn cancelled_among(tx: &mut Tx, ids: &[Uuid]) -> DbResult<HashSet<Uuid>> {
    let rows = for_keys(
        tx,
        "SELECT id FROM payments WHERE status = 'CANCELLED' AND id IN",
        "",
        Vec::new(),
        ids.iter().copied(),
    )
    .await?;
    rows.iter().map(|r| r.get("id")).collect()
}

/// Sets a payment's provider reference unless it has one.
const KEEP_REFERENCE: &str =
    "UPDATE payments SET provider_reference = $1 WHERE id = $2 AND provider_reference IS NULL";

/// Records the provider's id for the charges of payments that did not take their approval
/// (cancelled meanwhile), so that voiding them can name the charge; a reference already kept
/// stays.
pub async fn keep_references(tx: &mut Tx, charges: &[(Uuid, &str)]) -> DbResult<()> {
    for (id, reference) in charges {
        sql(KEEP_REFERENCE)
            .bind(*reference)
            .bind(*id)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// Records the provider's id for the charge of a payment that waits on the provider (Stripe's
/// PaymentIntent still processing): the outcome the provider sends later must name it. A
/// reference already kept stays.
pub async fn keep_reference(db: &Db, id: Uuid, reference: &str) -> DbResult<()> {
    sql(KEEP_REFERENCE)
        .bind(reference)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// Takes over PROCESSING payments whose lease ran out (their process died or gave up) and
/// leases them to this process; returns their ids with the flow each belongs to.
pub async fn claim_stalled(
    db: &Db,
    limit: usize,
    lease: Duration,
) -> DbResult<Vec<(Uuid, EventContext)>> {
    const STALLED: Lease = Lease {
        table: "payments",
        key: "id",
        set: "locked_until = $1",
        due: "status = 'PROCESSING' AND (locked_until IS NULL OR locked_until < $2)",
        order: "locked_until",
        returning: "id, correlation_id, causation_id",
    };
    let rows = db.lease(&STALLED, later(lease), limit).await?;
    rows.iter()
        .map(|r| Ok((r.get("id")?, context_of(r)?)))
        .collect()
}

/// Records that an order exists (and, with `cancelled`, that it was cancelled), and returns
/// whether it is cancelled. The upsert locks the order's row, so the created and cancelled events
/// of one order are handled one after the other even on different replicas.
pub async fn note_order(tx: &mut Tx, order_id: Uuid, cancelled: bool) -> DbResult<bool> {
    note_orders(tx, &[order_id], cancelled)
        .await?
        .get(&order_id)
        .copied()
        .ok_or_else(|| DbError::column("cancelled", "the upsert returned no row"))
}

/// [`note_order`] for many orders at once (each id once): records that they exist (cancelled,
/// with `cancelled`) and returns which of them are cancelled.
pub async fn note_orders(
    tx: &mut Tx,
    order_ids: &[Uuid],
    cancelled: bool,
) -> DbResult<HashMap<Uuid, bool>> {
    let now = Utc::now();
    let rows = order_ids
        .iter()
        .map(|id| vec![Arg::from(*id), Arg::from(cancelled), Arg::from(now)])
        .collect();
    let seen = for_rows(
        tx,
        "INSERT INTO orders_seen (order_id, cancelled, seen_at)",
        "ON CONFLICT (order_id) DO UPDATE SET cancelled = (orders_seen.cancelled OR excluded.cancelled), seen_at = excluded.seen_at
         RETURNING order_id, cancelled",
        rows,
    )
    .await?;
    seen.iter()
        .map(|r| Ok((r.get("order_id")?, r.get("cancelled")?)))
        .collect()
}

/// Asks for money to be given back, in the transaction that decides it; a payment has at most
/// one request (a repeat changes nothing).
pub async fn request_refunds(
    tx: &mut Tx,
    requests: &[(Uuid, RefundKind, &EventContext)],
) -> DbResult<()> {
    let now = Utc::now();
    let rows = requests
        .iter()
        .map(|(id, kind, context)| {
            vec![
                Arg::from(*id),
                Arg::from(kind.as_str()),
                Arg::from(context.correlation_id.as_str()),
                Arg::from(context.causation_id),
                Arg::from(now),
                Arg::from(now),
            ]
        })
        .collect();
    for_rows(
        tx,
        "INSERT INTO refunds (payment_id, kind, correlation_id, causation_id, next_attempt_at, requested_at)",
        "ON CONFLICT (payment_id) DO NOTHING",
        rows,
    )
    .await?;
    Ok(())
}

/// A refund the provider has yet to confirm.
#[derive(Debug, Clone)]
pub struct DueRefund {
    pub payment_id: Uuid,
    pub kind: RefundKind,
    pub context: EventContext,
    /// Attempts so far, this one included.
    pub attempts: i64,
}

/// Claims refunds that are due, leased to this process for `lease` (so replicas never ask the
/// provider about one at once, and a process that dies leaves it to another).
pub async fn claim_due_refunds(db: &Db, limit: usize, lease: Duration) -> DbResult<Vec<DueRefund>> {
    const DUE: Lease = Lease {
        table: "refunds",
        key: "payment_id",
        set: "next_attempt_at = $1, attempts = attempts + 1",
        due: "next_attempt_at <= $2",
        order: "next_attempt_at",
        returning: "payment_id, kind, correlation_id, causation_id, attempts",
    };
    let rows = db.lease(&DUE, later(lease), limit).await?;
    rows.iter()
        .map(|r| {
            Ok(DueRefund {
                payment_id: r.get("payment_id")?,
                kind: r.parsed("kind")?,
                context: context_of(r)?,
                attempts: r.get("attempts")?,
            })
        })
        .collect()
}

/// Records a failed attempt; the refund is tried again at `retry_at`.
pub async fn refund_failed(
    db: &Db,
    payment_id: Uuid,
    error: &str,
    retry_at: DateTime<Utc>,
) -> DbResult<()> {
    sql("UPDATE refunds SET last_error = $1, next_attempt_at = $2 WHERE payment_id = $3")
        .bind(error)
        .bind(retry_at)
        .bind(payment_id)
        .execute(db)
        .await?;
    Ok(())
}

/// Removes a refund the provider has confirmed, in the transaction that records its effect.
pub async fn refund_confirmed(tx: &mut Tx, payment_id: Uuid) -> DbResult<()> {
    sql("DELETE FROM refunds WHERE payment_id = $1")
        .bind(payment_id)
        .execute(tx)
        .await?;
    Ok(())
}

/// How many refunds wait for the provider.
pub async fn refunds_pending(db: &Db) -> DbResult<i64> {
    sql("SELECT COUNT(*) AS n FROM refunds")
        .fetch_one(db)
        .await?
        .get("n")
}

/// Which of `ids` are still PROCESSING.
pub async fn processing_among(db: &Db, ids: &[Uuid]) -> DbResult<HashSet<Uuid>> {
    let rows = for_keys(
        db,
        "SELECT id FROM payments WHERE status = 'PROCESSING' AND id IN",
        "",
        Vec::new(),
        ids.iter().copied(),
    )
    .await?;
    rows.iter().map(|r| r.get("id")).collect()
}
