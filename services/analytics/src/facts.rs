//! The read models, made from events: each order's facts (one row, whichever of its events came
//! first), and what every order contributes to the quarter-hour sums the reports add up.
//!
//! Events of one order come from several services and may arrive in any order (a retried one
//! after a later one, Kafka topics read side by side). So an event never adds to a sum
//! directly: it changes the order's row, and the sums move by the difference between what the
//! order contributed before and what it contributes after. Whatever the order of arrival, the
//! sums end the same.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use kassa_contracts::{
    Envelope,
    events::{
        Event, OrderCancelled, OrderCompleted, OrderCreated, OrderFailed, OrderPaid,
        PaymentApproved, PaymentCompleted, PaymentRefunded,
    },
};
use kassa_platform::{
    bus::HandlerError,
    db::{Arg, DbResult, Row, Tx, for_keys, for_rows, sql},
    known::{Change, RecordEvent},
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::period::slot_of;

kassa_contracts::status_enum! {
    /// Where an order stands, as its own events tell it.
    pub enum Status {
        Pending = "PENDING",
        Paid = "PAID",
        Completed = "COMPLETED",
        Failed = "FAILED",
        Cancelled = "CANCELLED" | "CANCELED",
    }
}

/// One line of an order for products of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    pub product_id: Uuid,
    pub name: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
}

/// What one event says, for the reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    /// An order was placed.
    Placed {
        order_id: Uuid,
        number: Option<i64>,
        currency: String,
        total_minor: i64,
        method: Option<String>,
        item: Option<String>,
        lines: Vec<Line>,
    },
    /// The orders service marked it paid.
    Paid(Uuid),
    /// Its payment went through for this amount.
    Approved {
        order_id: Uuid,
        amount_minor: i64,
    },
    Failed(Uuid),
    Cancelled(Uuid),
    /// Every item was handed out.
    Completed(Uuid),
    /// Money went back to the customer.
    Refunded {
        order_id: Uuid,
        amount_minor: i64,
    },
    /// It was paid in person, this way (Cash, QRIS).
    PaidInPerson {
        order_id: Uuid,
        method: String,
    },
    /// The catalog named a product.
    Product {
        id: Uuid,
        name: String,
    },
    /// Counted as activity only.
    Other,
}

/// A known event type whose payload cannot be read is an error (the event is retried, then
/// dead-lettered); an event of any other type is activity.
pub fn read(event: &Envelope) -> Result<Fact, HandlerError> {
    let t = event.event_type.as_str();
    Ok(match t {
        OrderCreated::TYPE => {
            let e: OrderCreated = event.decode()?;
            Fact::Placed {
                order_id: e.order_id,
                number: e.order_number,
                currency: e.currency,
                total_minor: e.amount_minor,
                method: e.payment_method,
                item: e.item,
                lines: e
                    .lines
                    .into_iter()
                    .map(|l| Line {
                        product_id: l.product_id,
                        name: l.name,
                        quantity: l.quantity,
                        unit_price_minor: l.unit_price_minor,
                    })
                    .collect(),
            }
        }
        OrderPaid::TYPE => Fact::Paid(event.decode::<OrderPaid>()?.order_id),
        OrderFailed::TYPE => Fact::Failed(event.decode::<OrderFailed>()?.order_id),
        OrderCancelled::TYPE => Fact::Cancelled(event.decode::<OrderCancelled>()?.order_id),
        OrderCompleted::TYPE => Fact::Completed(event.decode::<OrderCompleted>()?.order_id),
        PaymentApproved::TYPE => {
            let e = event.decode::<PaymentApproved>()?.0;
            Fact::Approved {
                order_id: e.order_id,
                amount_minor: e.amount_minor,
            }
        }
        PaymentRefunded::TYPE => {
            let e = event.decode::<PaymentRefunded>()?.0;
            Fact::Refunded {
                order_id: e.order_id,
                amount_minor: e.amount_minor,
            }
        }
        PaymentCompleted::TYPE => {
            let e: PaymentCompleted = event.decode()?;
            Fact::PaidInPerson {
                order_id: e.order_id,
                method: e.method,
            }
        }
        "product.created" | "product.updated" => {
            let record = RecordEvent::decode(event)?;
            match (record.change, record.data["name"].as_str()) {
                (Change::Deleted, _) => Fact::Other,
                (_, Some(name)) => Fact::Product {
                    id: record.id,
                    name: name.to_owned(),
                },
                (_, None) => return Err(HandlerError::new("a product event without a name")),
            }
        }
        _ => Fact::Other,
    })
}

impl Fact {
    fn order_id(&self) -> Option<Uuid> {
        match self {
            Fact::Placed { order_id, .. }
            | Fact::Approved { order_id, .. }
            | Fact::Refunded { order_id, .. }
            | Fact::PaidInPerson { order_id, .. } => Some(*order_id),
            Fact::Paid(id) | Fact::Failed(id) | Fact::Cancelled(id) | Fact::Completed(id) => {
                Some(*id)
            }
            Fact::Product { .. } | Fact::Other => None,
        }
    }
}

/// Everything known of one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderFacts {
    pub order_id: Uuid,
    pub order_number: Option<i64>,
    /// When it was placed; `None` until `order.created` is seen.
    pub placed_at: Option<DateTime<Utc>>,
    pub currency: Option<String>,
    pub total_minor: Option<i64>,
    pub method: Option<String>,
    pub item: Option<String>,
    pub lines: Vec<Line>,
    pub paid_minor: i64,
    pub refunded_minor: i64,
    pub paid: bool,
    pub failed: bool,
    pub cancelled: bool,
    pub completed: bool,
}

pub const COLUMNS: &str = "order_id, order_number, placed_at, currency, total_minor, method, \
    item, lines, paid_minor, refunded_minor, paid, failed, cancelled, completed, status, updated_at";

impl OrderFacts {
    fn new(order_id: Uuid) -> Self {
        OrderFacts {
            order_id,
            order_number: None,
            placed_at: None,
            currency: None,
            total_minor: None,
            method: None,
            item: None,
            lines: Vec::new(),
            paid_minor: 0,
            refunded_minor: 0,
            paid: false,
            failed: false,
            cancelled: false,
            completed: false,
        }
    }

    pub fn from_row(row: &Row) -> DbResult<Self> {
        let lines: String = row.get("lines")?;
        Ok(OrderFacts {
            order_id: row.get("order_id")?,
            order_number: row.get("order_number")?,
            placed_at: row.get("placed_at")?,
            currency: row.get("currency")?,
            total_minor: row.get("total_minor")?,
            method: row.get("method")?,
            item: row.get("item")?,
            lines: serde_json::from_str(&lines)
                .map_err(|e| kassa_platform::db::DbError::column("lines", e.to_string()))?,
            paid_minor: row.get("paid_minor")?,
            refunded_minor: row.get("refunded_minor")?,
            paid: row.get("paid")?,
            failed: row.get("failed")?,
            cancelled: row.get("cancelled")?,
            completed: row.get("completed")?,
        })
    }

    fn args(&self, now: DateTime<Utc>) -> Vec<Arg> {
        let lines = serde_json::to_string(&self.lines).unwrap_or_else(|_| "[]".into());
        vec![
            self.order_id.into(),
            self.order_number.into(),
            self.placed_at.into(),
            self.currency.clone().into(),
            self.total_minor.into(),
            self.method.clone().into(),
            self.item.clone().into(),
            lines.into(),
            self.paid_minor.into(),
            self.refunded_minor.into(),
            self.paid.into(),
            self.failed.into(),
            self.cancelled.into(),
            self.completed.into(),
            self.status().as_str().into(),
            now.into(),
        ]
    }

    /// Where the order stands: a cancellation or a failure is final, whatever came before it.
    pub fn status(&self) -> Status {
        if self.cancelled {
            Status::Cancelled
        } else if self.failed {
            Status::Failed
        } else if self.completed {
            Status::Completed
        } else if self.paid {
            Status::Paid
        } else {
            Status::Pending
        }
    }

    fn take(&mut self, fact: Fact, at: DateTime<Utc>) {
        match fact {
            Fact::Placed {
                number,
                currency,
                total_minor,
                method,
                item,
                lines,
                ..
            } => {
                self.placed_at = Some(at);
                self.order_number = number.or(self.order_number);
                self.currency = Some(currency);
                self.total_minor = Some(total_minor);
                // A method seen on the payment is more precise than the one ordered.
                self.method = self.method.take().or(method);
                self.item = item;
                self.lines = lines;
            }
            Fact::Paid(_) => self.paid = true,
            Fact::Approved { amount_minor, .. } => self.paid_minor = amount_minor,
            Fact::Failed(_) => self.failed = true,
            Fact::Cancelled(_) => self.cancelled = true,
            Fact::Completed(_) => {
                self.completed = true;
                self.paid = true;
            }
            Fact::Refunded { amount_minor, .. } => self.refunded_minor += amount_minor,
            Fact::PaidInPerson { method, .. } => self.method = Some(method),
            Fact::Product { .. } | Fact::Other => {}
        }
    }

    /// What the order adds to the sales of its slot, once it is known when it was placed.
    fn sales(&self) -> Option<(SlotKey, Sales)> {
        let (at, currency) = (self.placed_at?, self.currency.clone()?);
        let status = self.status();
        let one = |s: Status| i64::from(status == s);
        Some((
            (slot_of(at), currency),
            Sales {
                orders: 1,
                pending: one(Status::Pending),
                paid: one(Status::Paid),
                completed: one(Status::Completed),
                failed: one(Status::Failed),
                cancelled: one(Status::Cancelled),
                paid_orders: i64::from(self.paid_minor > 0),
                revenue_minor: self.paid_minor,
                refunded_orders: i64::from(self.refunded_minor > 0),
                refunds_minor: self.refunded_minor,
            },
        ))
    }

    /// What the order adds to its products' sales: the lines of an order paid and not
    /// cancelled.
    fn product_sales(&self) -> Vec<(ProductKey, ProductSales)> {
        let (Some(at), Some(currency)) = (self.placed_at, &self.currency) else {
            return Vec::new();
        };
        if !matches!(self.status(), Status::Paid | Status::Completed) {
            return Vec::new();
        }
        self.lines
            .iter()
            .map(|l| {
                (
                    (slot_of(at), l.product_id, currency.clone()),
                    ProductSales {
                        quantity: l.quantity,
                        revenue_minor: l.quantity.saturating_mul(l.unit_price_minor),
                    },
                )
            })
            .collect()
    }
}

type SlotKey = (i64, String);
type ProductKey = (i64, Uuid, String);

/// The sums of one slot and currency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sales {
    pub orders: i64,
    pub pending: i64,
    pub paid: i64,
    pub completed: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub paid_orders: i64,
    pub revenue_minor: i64,
    pub refunded_orders: i64,
    pub refunds_minor: i64,
}

impl Sales {
    fn fields(&self) -> [i64; 10] {
        [
            self.orders,
            self.pending,
            self.paid,
            self.completed,
            self.failed,
            self.cancelled,
            self.paid_orders,
            self.revenue_minor,
            self.refunded_orders,
            self.refunds_minor,
        ]
    }

    fn from_fields(f: [i64; 10]) -> Self {
        Sales {
            orders: f[0],
            pending: f[1],
            paid: f[2],
            completed: f[3],
            failed: f[4],
            cancelled: f[5],
            paid_orders: f[6],
            revenue_minor: f[7],
            refunded_orders: f[8],
            refunds_minor: f[9],
        }
    }

    fn add(&mut self, other: &Sales, sign: i64) {
        let mut f = self.fields();
        for (a, b) in f.iter_mut().zip(other.fields()) {
            *a += sign * b;
        }
        *self = Sales::from_fields(f);
    }

    pub fn add_all(&mut self, other: &Sales) {
        self.add(other, 1);
    }
}

/// The sales of one product in one slot and currency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProductSales {
    pub quantity: i64,
    pub revenue_minor: i64,
}

/// The read models' tables, emptied by a rebuild.
pub const TABLES: [&str; 5] = [
    "order_facts",
    "sales_slots",
    "product_slots",
    "products",
    "activity_slots",
];

/// Applies `facts` (each with the time and type of its event) to the read models inside `tx`;
/// with `sink`, the orders changed are queued for the ClickHouse sink.
pub async fn project(
    tx: &mut Tx,
    facts: Vec<(Fact, DateTime<Utc>, &str)>,
    sink: bool,
) -> Result<(), HandlerError> {
    if tx.is_postgres() {
        // Waits while a rebuild makes the figures again (it holds the table EXCLUSIVE), so an
        // event is counted by the rebuild or after it, never by both.
        sql("LOCK TABLE order_facts IN ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
    }
    let now = kassa_contracts::now();
    let mut activity: BTreeMap<(i64, String), i64> = BTreeMap::new();
    let mut names: BTreeMap<Uuid, (String, bool)> = BTreeMap::new();
    let mut ids: Vec<Uuid> = facts.iter().filter_map(|(f, ..)| f.order_id()).collect();
    ids.sort();
    ids.dedup();

    // The orders these events are about, locked against another replica's batch.
    let lock = if tx.is_postgres() {
        " ORDER BY order_id FOR UPDATE"
    } else {
        ""
    };
    let known = for_keys(
        &mut *tx,
        &format!("SELECT {COLUMNS} FROM order_facts WHERE order_id IN"),
        lock,
        Vec::new(),
        ids.iter().copied(),
    )
    .await?;
    let mut orders: HashMap<Uuid, (OrderFacts, bool)> = HashMap::new();
    for row in &known {
        let o = OrderFacts::from_row(row)?;
        orders.insert(o.order_id, (o, false));
    }
    let before: HashMap<Uuid, OrderFacts> =
        orders.iter().map(|(id, (o, _))| (*id, o.clone())).collect();

    for (fact, at, event_type) in facts {
        *activity
            .entry((slot_of(at), event_type.to_owned()))
            .or_default() += 1;
        match &fact {
            Fact::Product { id, name } => {
                names.insert(*id, (name.clone(), true));
            }
            Fact::Placed { lines, .. } => {
                for l in lines {
                    names
                        .entry(l.product_id)
                        .or_insert_with(|| (l.name.clone(), false));
                }
            }
            _ => {}
        }
        if let Some(id) = fact.order_id() {
            let (order, _) = orders
                .entry(id)
                .or_insert_with(|| (OrderFacts::new(id), true));
            order.take(fact, at);
        }
    }

    let mut sales: BTreeMap<SlotKey, Sales> = BTreeMap::new();
    let mut products: BTreeMap<ProductKey, ProductSales> = BTreeMap::new();
    let mut fresh = Vec::new();
    let mut changed = Vec::new();
    let mut queued = Vec::new();
    for (id, (after, is_new)) in &orders {
        let old = before.get(id);
        if old == Some(after) {
            continue;
        }
        if let Some((key, s)) = old.and_then(OrderFacts::sales) {
            sales.entry(key).or_default().add(&s, -1);
        }
        if let Some((key, s)) = after.sales() {
            sales.entry(key).or_default().add(&s, 1);
        }
        for (key, p) in old.map(OrderFacts::product_sales).unwrap_or_default() {
            let e = products.entry(key).or_default();
            e.quantity -= p.quantity;
            e.revenue_minor -= p.revenue_minor;
        }
        for (key, p) in after.product_sales() {
            let e = products.entry(key).or_default();
            e.quantity += p.quantity;
            e.revenue_minor += p.revenue_minor;
        }
        if sink {
            queued.push(vec![Arg::from(*id)]);
        }
        if *is_new {
            fresh.push(after.args(now));
        } else {
            changed.push(after.args(now));
        }
    }

    let n_fresh = fresh.len();
    let inserted = for_rows(
        tx,
        &format!("INSERT INTO order_facts ({COLUMNS})"),
        "ON CONFLICT (order_id) DO NOTHING RETURNING order_id",
        fresh,
    )
    .await?;
    if inserted.len() != n_fresh {
        // Another replica recorded one of these orders since they were read: the batch is
        // handled again, and then reads it.
        return Err(HandlerError::new(
            "an order was recorded by another consumer meanwhile; retrying",
        ));
    }
    let update = COLUMNS
        .split(", ")
        .skip(1)
        .map(|c| format!("{c} = excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    for_rows(
        tx,
        &format!("INSERT INTO order_facts ({COLUMNS})"),
        &format!("ON CONFLICT (order_id) DO UPDATE SET {update}"),
        changed,
    )
    .await?;

    for_rows(tx, "INSERT INTO sink_queue (order_id)", "", queued).await?;

    let sales: Vec<Vec<Arg>> = sales
        .into_iter()
        .filter(|(_, s)| *s != Sales::default())
        .map(|((slot, currency), s)| {
            let mut row: Vec<Arg> = vec![slot.into(), currency.into()];
            row.extend(s.fields().map(Arg::from));
            row
        })
        .collect();
    for_rows(
        tx,
        "INSERT INTO sales_slots (slot, currency, orders, pending, paid, completed, failed, \
         cancelled, paid_orders, revenue_minor, refunded_orders, refunds_minor)",
        "ON CONFLICT (slot, currency) DO UPDATE SET orders = sales_slots.orders + excluded.orders, \
         pending = sales_slots.pending + excluded.pending, paid = sales_slots.paid + excluded.paid, \
         completed = sales_slots.completed + excluded.completed, \
         failed = sales_slots.failed + excluded.failed, \
         cancelled = sales_slots.cancelled + excluded.cancelled, \
         paid_orders = sales_slots.paid_orders + excluded.paid_orders, \
         revenue_minor = sales_slots.revenue_minor + excluded.revenue_minor, \
         refunded_orders = sales_slots.refunded_orders + excluded.refunded_orders, \
         refunds_minor = sales_slots.refunds_minor + excluded.refunds_minor",
        sales,
    )
    .await?;

    let products: Vec<Vec<Arg>> = products
        .into_iter()
        .filter(|(_, p)| *p != ProductSales::default())
        .map(|((slot, product, currency), p)| {
            vec![
                slot.into(),
                product.into(),
                currency.into(),
                p.quantity.into(),
                p.revenue_minor.into(),
            ]
        })
        .collect();
    for_rows(
        tx,
        "INSERT INTO product_slots (slot, product_id, currency, quantity, revenue_minor)",
        "ON CONFLICT (slot, product_id, currency) DO UPDATE SET \
         quantity = product_slots.quantity + excluded.quantity, \
         revenue_minor = product_slots.revenue_minor + excluded.revenue_minor",
        products,
    )
    .await?;

    // The catalog's name wins over the one an order was placed with.
    let names: Vec<Vec<Arg>> = names
        .into_iter()
        .map(|(id, (name, catalog))| vec![id.into(), name.into(), catalog.into()])
        .collect();
    for_rows(
        tx,
        "INSERT INTO products (product_id, name, from_catalog)",
        "ON CONFLICT (product_id) DO UPDATE SET name = CASE WHEN excluded.from_catalog \
         OR NOT products.from_catalog THEN excluded.name ELSE products.name END, \
         from_catalog = products.from_catalog OR excluded.from_catalog",
        names,
    )
    .await?;

    let activity: Vec<Vec<Arg>> = activity
        .into_iter()
        .map(|((slot, t), n)| vec![slot.into(), t.into(), n.into()])
        .collect();
    for_rows(
        tx,
        "INSERT INTO activity_slots (slot, event_type, events)",
        "ON CONFLICT (slot, event_type) DO UPDATE SET events = activity_slots.events + excluded.events",
        activity,
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed(id: Uuid) -> Fact {
        Fact::Placed {
            order_id: id,
            number: Some(7),
            currency: "USD".into(),
            total_minor: 250,
            method: None,
            item: None,
            lines: vec![Line {
                product_id: Uuid::nil(),
                name: "Cola".into(),
                quantity: 2,
                unit_price_minor: 125,
            }],
        }
    }

    #[test]
    fn an_order_ends_the_same_whatever_order_its_events_come_in() {
        let id = Uuid::now_v7();
        let at = kassa_contracts::now();
        let facts = [
            placed(id),
            Fact::Approved {
                order_id: id,
                amount_minor: 250,
            },
            Fact::Paid(id),
            Fact::Cancelled(id),
            Fact::Refunded {
                order_id: id,
                amount_minor: 250,
            },
        ];
        let mut forward = OrderFacts::new(id);
        for f in facts.iter().cloned() {
            forward.take(f, at);
        }
        let mut backward = OrderFacts::new(id);
        for f in facts.iter().rev().cloned() {
            backward.take(f, at);
        }
        assert_eq!(forward, backward);
        assert_eq!(forward.status(), Status::Cancelled);
        let (_, s) = forward.sales().unwrap();
        assert_eq!(
            (s.cancelled, s.revenue_minor, s.refunds_minor),
            (1, 250, 250)
        );
        assert!(
            forward.product_sales().is_empty(),
            "a refunded order sold nothing"
        );
    }

    #[test]
    fn an_order_counts_once_it_is_known_when_it_was_placed() {
        let id = Uuid::now_v7();
        let mut o = OrderFacts::new(id);
        o.take(Fact::Paid(id), kassa_contracts::now());
        assert!(o.sales().is_none());
        o.take(placed(id), kassa_contracts::now());
        let (_, s) = o.sales().unwrap();
        assert_eq!((s.orders, s.paid, s.pending), (1, 1, 0));
        assert_eq!(o.product_sales()[0].1.revenue_minor, 250);
    }
}
