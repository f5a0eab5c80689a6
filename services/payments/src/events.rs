//! What payments does with order events: a new order gets a PROCESSING payment that the
//! processor charges; a cancelled order's payment is cancelled or refunded. Member events keep
//! payments' copy of who may pay by hand (`manual.rs`).

use std::sync::Arc;

use async_trait::async_trait;
use kassa_contracts::{
    Currency, Envelope, EventContext, Money,
    events::{
        Event, OrderCancelled, OrderCreated, PaymentCancelled, PaymentOutcome, PaymentRefunded,
        SAVED_CARD,
    },
};
use kassa_platform::{
    bus::HandlerError,
    cache::Cache,
    consumer::{Applied, Apply, Fresh},
    db::{Db, Tx},
    known::{self, RecordEvent},
};
use uuid::Uuid;

use crate::{
    NAME,
    domain::{InPerson, OnOrderCancelled, Payment, PaymentStatus, RefundKind},
    processor::{Processor, Work},
    refunds::Refunds,
    store,
};

/// The event types this consumer is bound to.
pub const TOPICS: [&str; 5] = [
    OrderCreated::TYPE,
    OrderCancelled::TYPE,
    "member.created",
    "member.updated",
    "member.deleted",
];

pub struct OrderEvents {
    pub db: Db,
    pub processor: Processor,
    pub refunds: Refunds,
    pub cache: Arc<dyn Cache>,
    pub lease: std::time::Duration,
}

/// An order event as payments reads it.
pub enum OrderEvent {
    /// A new order: its id, customer and amount.
    Created(OrderCreated, Money),
    Cancelled(OrderCancelled),
    /// A member was created, changed or deleted.
    Member(RecordEvent),
}

/// What follows the commit of a batch.
#[derive(Default)]
pub struct AfterCommit {
    /// New payments to charge.
    charges: Vec<Work>,
    /// Payments created or changed, as stored: the cache gets them.
    changed: Vec<Payment>,
    /// Whether refunds were asked for.
    refunds: bool,
}

fn outcome_of(p: &Payment) -> PaymentOutcome {
    PaymentOutcome {
        payment_id: p.id,
        order_id: p.order_id,
        amount_minor: p.amount.minor(),
        currency: p.amount.currency().code().to_owned(),
        reason: None,
        reference: p.provider_reference.clone(),
    }
}

/// Moves `payment`, locked in `tx`, to `to` for `reason`; it cannot have changed meanwhile.
async fn moved(
    tx: &mut Tx,
    payment: &Payment,
    to: PaymentStatus,
    reason: &str,
) -> Result<Payment, HandlerError> {
    store::transition(tx, payment, to, Some(reason), None)
        .await?
        .ok_or_else(|| HandlerError::new(format!("payment {} changed while locked", payment.id)))
}

/// A new order's id, customer and amount, read from its event.
fn decode_created(event: &Envelope) -> Result<(OrderCreated, Money), HandlerError> {
    let order: OrderCreated = event.decode()?;
    let currency = Currency::parse(&order.currency)
        .map_err(|e| HandlerError::new(format!("order.created currency: {e}")))?;
    let amount = Money::from_minor(order.amount_minor, currency)
        .map_err(|e| HandlerError::new(format!("order.created amount: {e}")))?;
    Ok((order, amount))
}

impl OrderEvents {
    /// New orders, with a few multi-row statements: each gets a PROCESSING payment (CANCELLED if
    /// the order was cancelled first, announced at once), charged once the batch commits.
    /// Orders that have a payment already get nothing.
    async fn orders_created(
        &self,
        tx: &mut Tx,
        mut todo: Vec<(&Envelope, &OrderCreated, Money)>,
        publish: &mut Vec<Envelope>,
        after: &mut AfterCommit,
    ) -> Result<(), HandlerError> {
        // One payment per order, and one locking order for every batch, so two replicas never
        // deadlock on the same orders.
        todo.sort_by_key(|(_, order, _)| order.order_id);
        todo.dedup_by_key(|(_, order, _)| order.order_id);
        let order_ids: Vec<Uuid> = todo.iter().map(|(_, o, _)| o.order_id).collect();
        let cancelled = store::note_orders(tx, &order_ids, false).await?;
        let payments: Vec<(Payment, EventContext)> = todo
            .iter()
            .map(|(event, order, amount)| {
                // Paid in person (seed 002): it waits for the kiosk's confirmation, and the
                // provider is never asked.
                let in_person = order.payment_method.as_deref().and_then(InPerson::parse);
                let status = if cancelled.get(&order.order_id) == Some(&true) {
                    PaymentStatus::Cancelled
                } else if in_person.is_some() {
                    PaymentStatus::Pending
                } else {
                    PaymentStatus::Processing
                };
                let mut payment =
                    Payment::for_order(order.order_id, order.user_id, *amount, status);
                payment.saved_card = order.payment_method.as_deref() == Some(SAVED_CARD);
                payment.method = in_person;
                payment.item = order.item.clone();
                payment.order_number = order.order_number;
                (payment, EventContext::caused_by(event))
            })
            .collect();
        let inserted = store::insert_all(tx, &payments, self.lease).await?;
        for (payment, ctx) in payments {
            if !inserted.contains(&payment.id) {
                continue;
            }
            if payment.status == PaymentStatus::Cancelled {
                let cancelled = PaymentCancelled(outcome_of(&payment));
                publish.push(Envelope::new(NAME, payment.id, &cancelled, &ctx));
                after.changed.push(payment);
                continue;
            }
            if payment.status == PaymentStatus::Pending {
                tracing::info!(payment_id = %payment.id, order_id = %payment.order_id, amount = %payment.amount, "payment waits to be paid in person");
                after.changed.push(payment);
                continue;
            }
            tracing::info!(payment_id = %payment.id, order_id = %payment.order_id, amount = %payment.amount, correlation_id = %ctx.correlation_id, "payment processing");
            after.changed.push(payment.clone());
            after.charges.push(Work {
                payment_id: payment.id,
                context: ctx,
                payment: Some(payment),
                handed_at: std::time::Instant::now(),
            });
        }
        Ok(())
    }

    /// A cancelled order: a payment in progress is cancelled, an approved one is refunded (the
    /// request is recorded here, and the refund loop asks the provider once this commits).
    async fn order_cancelled(
        &self,
        tx: &mut Tx,
        event: &Envelope,
        order: &OrderCancelled,
        publish: &mut Vec<Envelope>,
        after: &mut AfterCommit,
    ) -> Result<(), HandlerError> {
        store::note_order(tx, order.order_id, true).await?;
        let Some(payment) = store::find_by_order_for_update(&self.db, tx, order.order_id).await?
        else {
            // No payment yet: when order.created arrives it finds the order cancelled.
            return Ok(());
        };
        let ctx = EventContext::caused_by(event);
        match payment.status.on_order_cancelled() {
            OnOrderCancelled::Cancel => {
                let cancelled =
                    moved(tx, &payment, PaymentStatus::Cancelled, "order cancelled").await?;
                publish.push(Envelope::new(
                    NAME,
                    payment.id,
                    &PaymentCancelled(outcome_of(&payment)),
                    &ctx,
                ));
                after.changed.push(cancelled);
                tracing::info!(payment_id = %payment.id, order_id = %order.order_id, "payment cancelled with its order");
            }
            OnOrderCancelled::Refund if payment.method.is_some() => {
                // Paid in person: the money goes back over the counter, not through the
                // provider, which never saw it.
                let refunded = moved(
                    tx,
                    &payment,
                    PaymentStatus::Refunded,
                    "order cancelled: give the money back in person",
                )
                .await?;
                publish.push(Envelope::new(
                    NAME,
                    payment.id,
                    &PaymentRefunded(outcome_of(&refunded)),
                    &ctx,
                ));
                after.changed.push(refunded);
            }
            OnOrderCancelled::Refund => {
                store::request_refunds(tx, &[(payment.id, RefundKind::Refund, &ctx)]).await?;
                after.refunds = true;
                tracing::info!(payment_id = %payment.id, order_id = %order.order_id, "refund requested for a cancelled order");
            }
            OnOrderCancelled::Nothing => {}
        }
        Ok(())
    }
}

#[async_trait]
impl Apply for OrderEvents {
    type Event = OrderEvent;
    type AfterCommit = AfterCommit;

    fn decode(&self, event: &Envelope) -> Result<OrderEvent, HandlerError> {
        match event.event_type.as_str() {
            OrderCreated::TYPE => {
                let (order, amount) = decode_created(event)?;
                Ok(OrderEvent::Created(order, amount))
            }
            OrderCancelled::TYPE => Ok(OrderEvent::Cancelled(event.decode()?)),
            other if other.starts_with("member.") => {
                Ok(OrderEvent::Member(RecordEvent::decode(event)?))
            }
            other => Err(HandlerError::new(format!(
                "payments does not handle {other}"
            ))),
        }
    }

    /// New orders first, then cancellations, so a cancellation in the same batch as its order
    /// finds the payment; a charge whose payment the batch cancelled never starts.
    async fn apply(
        &self,
        tx: &mut Tx,
        events: Vec<Fresh<'_, OrderEvent>>,
    ) -> Result<Applied<AfterCommit>, HandlerError> {
        let mut publish = Vec::new();
        let mut after = AfterCommit::default();
        let created: Vec<(&Envelope, &OrderCreated, Money)> = events
            .iter()
            .filter_map(|f| match &f.event {
                OrderEvent::Created(order, amount) => Some((f.envelope, order, *amount)),
                OrderEvent::Cancelled(_) | OrderEvent::Member(_) => None,
            })
            .collect();
        if !created.is_empty() {
            self.orders_created(tx, created, &mut publish, &mut after)
                .await?;
        }
        for f in &events {
            match &f.event {
                OrderEvent::Cancelled(order) => {
                    self.order_cancelled(tx, f.envelope, order, &mut publish, &mut after)
                        .await?
                }
                OrderEvent::Member(member) => known::note(tx, member).await?,
                OrderEvent::Created(..) => {}
            }
        }
        let cancelled: Vec<Uuid> = after
            .changed
            .iter()
            .filter(|p| p.status == PaymentStatus::Cancelled)
            .map(|p| p.id)
            .collect();
        after.charges.retain(|w| !cancelled.contains(&w.payment_id));
        Ok(Applied {
            publish,
            after_commit: after,
        })
    }

    async fn committed(&self, after: AfterCommit) {
        if after.refunds {
            self.refunds.requested();
        }
        for work in after.charges {
            self.processor.submit(work).await;
        }
        // Each payment as this batch left it, cached beside the next deliveries; should the
        // settlement's entry land first, this older state does not replace it (the entries are
        // versioned).
        crate::api::cache_payments_beside(self.cache.clone(), latest_of_each(after.changed));
    }
}

/// The last state of each payment in `changed` (a payment created and cancelled in one batch
/// appears twice).
fn latest_of_each(changed: Vec<Payment>) -> Vec<Payment> {
    let mut latest: Vec<Payment> = Vec::with_capacity(changed.len());
    for p in changed {
        match latest.iter_mut().find(|q| q.id == p.id) {
            Some(q) => *q = p,
            None => latest.push(p),
        }
    }
    latest
}
