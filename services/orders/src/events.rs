//! What orders does with payment outcomes: PAID on approval, FAILED on a decline or failure;
//! with an expired stock hold: a PENDING order whose items are back on sale is CANCELLED; and
//! with a product changed in the catalog: its cached price is forgotten, so the next order pays
//! the new one rather than waiting out the cache.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use async_trait::async_trait;
use kassa_contracts::{
    Envelope, EventContext,
    events::{
        Event, OrderCancelled, OrderCompleted, OrderFailed, OrderPaid, OrderReady, PaymentApproved,
        PaymentDeclined, PaymentFailed, PaymentOutcome, PickupCompleted, ReservationExpired,
    },
};
use kassa_platform::{
    bus::HandlerError,
    cache::Cache,
    consumer::{Applied, Apply, Fresh},
    db::{Db, Tx},
    known::RecordEvent,
};
use uuid::Uuid;

use crate::{
    NAME,
    domain::{Order, OrderStatus, Transition},
    store,
};

/// The catalog's events after which a product's cached price is stale.
const PRODUCT_CHANGED: [&str; 2] = ["product.updated", "product.deleted"];

/// The event types this consumer is bound to.
pub const TOPICS: [&str; 7] = [
    PaymentApproved::TYPE,
    PaymentDeclined::TYPE,
    PaymentFailed::TYPE,
    ReservationExpired::TYPE,
    PickupCompleted::TYPE,
    PRODUCT_CHANGED[0],
    PRODUCT_CHANGED[1],
];

/// Why an order cancelled by its expired hold is.
pub const HOLD_EXPIRED: &str = "reservation_expired";

/// What an event says of an order.
pub enum Settled {
    /// Its payment's outcome, and whether it approved.
    Payment(PaymentOutcome, bool),
    /// Its stock hold expired before it was paid.
    HoldExpired(Uuid),
    /// Every item of it was handed out.
    PickedUp(Uuid),
}

impl Settled {
    fn order_id(&self) -> Uuid {
        match self {
            Settled::Payment(outcome, _) => outcome.order_id,
            Settled::HoldExpired(order_id) | Settled::PickedUp(order_id) => *order_id,
        }
    }
}

/// An event as orders reads it: of one of its orders, or of a product of the catalog.
pub enum Heard {
    Order(Settled),
    /// A product changed (or went): its cached price is stale.
    Product(Uuid),
}

pub struct PaymentOutcomes {
    pub db: Db,
    /// Where the catalog's prices are cached (`product:price:{id}`).
    pub prices: Arc<dyn Cache>,
}

/// Reads a payment outcome (and whether it approved), an expired hold, a pickup, or a product's
/// change.
fn decode(event: &Envelope) -> Result<Heard, HandlerError> {
    if PRODUCT_CHANGED.contains(&event.event_type.as_str()) {
        return Ok(Heard::Product(RecordEvent::decode(event)?.id));
    }
    Ok(Heard::Order(match event.event_type.as_str() {
        PaymentApproved::TYPE => Settled::Payment(event.decode::<PaymentApproved>()?.0, true),
        PaymentDeclined::TYPE => Settled::Payment(event.decode::<PaymentDeclined>()?.0, false),
        PaymentFailed::TYPE => Settled::Payment(event.decode::<PaymentFailed>()?.0, false),
        ReservationExpired::TYPE => {
            Settled::HoldExpired(event.decode::<ReservationExpired>()?.order_id)
        }
        PickupCompleted::TYPE => Settled::PickedUp(event.decode::<PickupCompleted>()?.order_id),
        other => return Err(HandlerError::new(format!("orders does not handle {other}"))),
    }))
}

/// The event an order's new status announces, with its `lines` (an order for items).
fn announce(
    order: &Order,
    settled: &Settled,
    cause: &Envelope,
    lines: &[crate::items::Line],
) -> Envelope {
    let ctx = EventContext::caused_by(cause);
    let outcome = match settled {
        Settled::PickedUp(order_id) => {
            let completed = OrderCompleted {
                order_id: *order_id,
                items: lines.iter().map(crate::items::Line::item).collect(),
                timestamp: kassa_contracts::now()
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            };
            return Envelope::new(NAME, order.id, &completed, &ctx);
        }
        Settled::HoldExpired(order_id) => {
            let cancelled = OrderCancelled {
                order_id: *order_id,
            };
            return Envelope::new(NAME, order.id, &cancelled, &ctx);
        }
        Settled::Payment(outcome, _) => outcome,
    };
    if order.status == OrderStatus::Paid {
        let paid = OrderPaid {
            order_id: order.id,
            payment_id: outcome.payment_id,
        };
        Envelope::new(NAME, order.id, &paid, &ctx)
    } else {
        let failed = OrderFailed {
            order_id: order.id,
            reason: outcome
                .reason
                .clone()
                .unwrap_or_else(|| cause.event_type.clone()),
        };
        Envelope::new(NAME, order.id, &failed, &ctx)
    }
}

#[async_trait]
impl Apply for PaymentOutcomes {
    type Event = Heard;
    /// Products whose cached prices to forget.
    type AfterCommit = Vec<Uuid>;

    fn decode(&self, event: &Envelope) -> Result<Self::Event, HandlerError> {
        decode(event)
    }

    /// All outcomes with a few multi-row statements: the batch's orders read and locked, their
    /// new statuses (one statement per status and reason), and the events announcing them.
    async fn apply(
        &self,
        tx: &mut Tx,
        heard: Vec<Fresh<'_, Self::Event>>,
    ) -> Result<Applied<Vec<Uuid>>, HandlerError> {
        let mut products = Vec::new();
        let mut todo = Vec::with_capacity(heard.len());
        for fresh in heard {
            match fresh.event {
                Heard::Order(settled) => todo.push(Fresh {
                    envelope: fresh.envelope,
                    event: settled,
                }),
                Heard::Product(id) => products.push(id),
            }
        }
        let mut ids: Vec<Uuid> = todo.iter().map(|f| f.event.order_id()).collect();
        // One locking order for every batch, so two replicas never deadlock on the same orders.
        ids.sort_unstable();
        ids.dedup();
        let mut orders: HashMap<Uuid, Order> = store::find_all_for_update(&self.db, tx, &ids)
            .await?
            .into_iter()
            .map(|o| (o.id, o))
            .collect();
        let mut changed = Vec::new();
        let mut announcements = Vec::new();
        for Fresh {
            envelope: event,
            event: settled,
        } in &todo
        {
            let order_id = settled.order_id();
            let Some(order) = orders.get_mut(&order_id) else {
                if matches!(settled, Settled::HoldExpired(_) | Settled::PickedUp(_)) {
                    // A hold made for an order that was then never stored.
                    continue;
                }
                return Err(HandlerError::new(format!(
                    "order {order_id} does not exist"
                )));
            };
            let transition = match settled {
                Settled::Payment(_, true) => order.status.on_payment_approved(),
                Settled::Payment(_, false) => order.status.on_payment_unsuccessful(),
                Settled::HoldExpired(_) => order.status.on_hold_expired(),
                Settled::PickedUp(_) => order.status.on_pickup_completed(),
            };
            match transition {
                Transition::To(status) => {
                    order.status = status;
                    match settled {
                        Settled::Payment(outcome, _) if outcome.reason.is_some() => {
                            order.failure_reason.clone_from(&outcome.reason);
                        }
                        Settled::HoldExpired(_) => order.failure_reason = Some(HOLD_EXPIRED.into()),
                        Settled::Payment(..) | Settled::PickedUp(_) => {}
                    }
                    // Only an order with words for what it is for can have lines: the
                    // checkout's orders cost no read.
                    let lines = if order.item.is_some()
                        && matches!(status, OrderStatus::Paid | OrderStatus::Completed)
                    {
                        store::lines(&self.db, order).await?
                    } else {
                        Vec::new()
                    };
                    announcements.push(announce(order, settled, event, &lines));
                    if status == OrderStatus::Paid && !lines.is_empty() {
                        let ready = OrderReady {
                            order_id: order.id,
                            lines: lines.iter().map(crate::items::Line::ordered).collect(),
                        };
                        let ctx = EventContext::caused_by(event);
                        announcements.push(Envelope::new(NAME, order.id, &ready, &ctx));
                    }
                    if !changed.contains(&order.id) {
                        changed.push(order.id);
                    }
                    tracing::info!(order_id = %order.id, status = status.as_str(), correlation_id = %event.correlationid, "order settled by its payment");
                }
                Transition::Ignore => {}
                Transition::Refuse => {
                    tracing::warn!(order_id = %order.id, status = order.status.as_str(), event = %event.event_type, correlation_id = %event.correlationid, "event contradicts the order's status; ignored");
                }
            }
        }
        // Orders that end in the same status with the same reason change in one statement.
        let mut groups: BTreeMap<(&'static str, Option<&str>), (OrderStatus, Vec<Uuid>)> =
            BTreeMap::new();
        for id in &changed {
            let order = &orders[id];
            groups
                .entry((order.status.as_str(), order.failure_reason.as_deref()))
                .or_insert_with(|| (order.status, Vec::new()))
                .1
                .push(*id);
        }
        let now = chrono::Utc::now();
        for ((_, reason), (status, ids)) in &groups {
            store::set_status_all(tx, ids, *status, *reason, now).await?;
        }
        Ok(Applied {
            publish: announcements,
            after_commit: products,
        })
    }

    async fn committed(&self, products: Vec<Uuid>) {
        for id in products {
            self.prices.remove(&crate::items::price_key(id)).await;
        }
    }
}
