//! What orders does with payment outcomes: PAID on approval, FAILED on a decline or failure.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use kassa_contracts::{
    Envelope, EventContext,
    events::{
        Event, OrderFailed, OrderPaid, PaymentApproved, PaymentDeclined, PaymentFailed,
        PaymentOutcome,
    },
};
use kassa_platform::{
    bus::{Handler, HandlerError},
    db::Db,
    inbox, outbox,
};
use uuid::Uuid;

use crate::{
    NAME,
    domain::{Order, OrderStatus, Transition},
    store,
};

/// The event types this consumer is bound to.
pub const TOPICS: [&str; 3] = [
    PaymentApproved::TYPE,
    PaymentDeclined::TYPE,
    PaymentFailed::TYPE,
];

pub struct PaymentOutcomes {
    pub db: Db,
}

/// A payment outcome, and whether it approved.
fn decode(event: &Envelope) -> Result<(PaymentOutcome, bool), HandlerError> {
    Ok(match event.event_type.as_str() {
        PaymentApproved::TYPE => (event.decode::<PaymentApproved>()?.0, true),
        PaymentDeclined::TYPE => (event.decode::<PaymentDeclined>()?.0, false),
        PaymentFailed::TYPE => (event.decode::<PaymentFailed>()?.0, false),
        other => return Err(HandlerError::new(format!("orders does not handle {other}"))),
    })
}

/// The event an order's new status announces.
fn announce(order: &Order, outcome: &PaymentOutcome, cause: &Envelope) -> Envelope {
    let ctx = EventContext::caused_by(cause);
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
impl Handler for PaymentOutcomes {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError> {
        self.handle_batch(std::slice::from_ref(event)).await
    }

    /// All outcomes in one transaction, with a few multi-row statements: the batch's inbox rows,
    /// its orders read and locked, their new statuses (one statement per status and reason), and
    /// the events announcing them.
    async fn handle_batch(&self, events: &[Envelope]) -> Result<(), HandlerError> {
        // A malformed event fails the batch before anything is written; the bus then handles
        // each event on its own, and only that one is retried and dead-lettered.
        let decoded = events.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
        let event_ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
        let mut tx = self.db.begin().await?;
        let mut fresh = inbox::record_all(&mut tx, NAME, &event_ids).await?;
        // Each event once, even if it came twice in the batch; repeats of earlier ones not at all.
        let todo: Vec<(&Envelope, PaymentOutcome, bool)> = events
            .iter()
            .zip(decoded)
            .filter(|(e, _)| fresh.remove(&e.id))
            .map(|(e, (outcome, approved))| (e, outcome, approved))
            .collect();
        if todo.is_empty() {
            tx.rollback().await?;
            return Ok(());
        }
        let mut ids: Vec<Uuid> = todo.iter().map(|(_, o, _)| o.order_id).collect();
        // One locking order for every batch, so two replicas never deadlock on the same orders.
        ids.sort_unstable();
        ids.dedup();
        let mut orders: HashMap<Uuid, Order> = store::find_all_for_update(&self.db, &mut tx, &ids)
            .await?
            .into_iter()
            .map(|o| (o.id, o))
            .collect();
        let mut changed = Vec::new();
        let mut announcements = Vec::new();
        for (event, outcome, approved) in &todo {
            let order = orders.get_mut(&outcome.order_id).ok_or_else(|| {
                HandlerError::new(format!("order {} does not exist", outcome.order_id))
            })?;
            let transition = if *approved {
                order.status.on_payment_approved()
            } else {
                order.status.on_payment_unsuccessful()
            };
            match transition {
                Transition::To(status) => {
                    order.status = status;
                    if outcome.reason.is_some() {
                        order.failure_reason.clone_from(&outcome.reason);
                    }
                    announcements.push(announce(order, outcome, event));
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
            store::set_status_all(&mut tx, ids, *status, *reason, now).await?;
        }
        outbox::add_all(&mut tx, &announcements).await?;
        tx.commit().await?;
        Ok(())
    }
}
