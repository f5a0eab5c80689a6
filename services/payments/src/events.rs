//! What payments does with order events: a new order gets a PROCESSING payment that the
//! processor charges; a cancelled order's payment is cancelled or refunded.

use std::sync::Arc;

use async_trait::async_trait;
use kassa_contracts::{
    Currency, Envelope, EventContext, Money,
    events::{
        Event, OrderCancelled, OrderCreated, PaymentCancelled, PaymentOutcome, PaymentRefunded,
    },
};
use kassa_platform::{
    bus::{Handler, HandlerError, one_by_one},
    cache::Cache,
    db::Db,
    inbox, outbox,
};
use uuid::Uuid;

use crate::{
    NAME,
    domain::{OnOrderCancelled, Payment, PaymentStatus},
    processor::{Processor, Work},
    provider::PaymentProvider,
    store,
};

/// The event types this consumer is bound to.
pub const TOPICS: [&str; 2] = [OrderCreated::TYPE, OrderCancelled::TYPE];

pub struct OrderEvents {
    pub db: Db,
    pub processor: Processor,
    pub provider: Arc<dyn PaymentProvider>,
    pub cache: Arc<dyn Cache>,
    pub lease: std::time::Duration,
}

fn outcome_of(p: &Payment) -> PaymentOutcome {
    PaymentOutcome {
        payment_id: p.id,
        order_id: p.order_id,
        amount_minor: p.amount.minor(),
        currency: p.amount.currency().code().to_owned(),
        reason: None,
    }
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
    /// New orders in one transaction, with a few multi-row statements: each gets a PROCESSING
    /// payment (CANCELLED if the order was cancelled first, announced at once), and the charges
    /// start once the transaction commits. Repeats of events handled before, and orders that
    /// have a payment already, get nothing.
    async fn orders_created(&self, events: &[Envelope]) -> Result<(), HandlerError> {
        // A malformed event fails the batch before anything is written; the bus then handles
        // each event on its own, and only that one is retried and dead-lettered.
        let decoded = events
            .iter()
            .map(decode_created)
            .collect::<Result<Vec<_>, _>>()?;
        let event_ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
        let mut tx = self.db.begin().await?;
        let mut fresh = inbox::record_all(&mut tx, NAME, &event_ids).await?;
        let mut todo: Vec<(&Envelope, OrderCreated, Money)> = events
            .iter()
            .zip(decoded)
            .filter(|(e, _)| fresh.remove(&e.id))
            .map(|(e, (order, amount))| (e, order, amount))
            .collect();
        // One payment per order, and one locking order for every batch, so two replicas never
        // deadlock on the same orders.
        todo.sort_by_key(|(_, order, _)| order.order_id);
        todo.dedup_by_key(|(_, order, _)| order.order_id);
        if todo.is_empty() {
            tx.rollback().await?;
            return Ok(());
        }
        let order_ids: Vec<Uuid> = todo.iter().map(|(_, o, _)| o.order_id).collect();
        let cancelled = store::note_orders(&mut tx, &order_ids, false).await?;
        let payments: Vec<(Payment, EventContext)> = todo
            .iter()
            .map(|(event, order, amount)| {
                let status = if cancelled.get(&order.order_id) == Some(&true) {
                    PaymentStatus::Cancelled
                } else {
                    PaymentStatus::Processing
                };
                (
                    Payment::for_order(order.order_id, order.user_id, *amount, status),
                    EventContext::caused_by(event),
                )
            })
            .collect();
        let inserted = store::insert_all(&mut tx, &payments, self.lease).await?;
        let mut charges = Vec::new();
        let mut announcements = Vec::new();
        for (payment, ctx) in payments {
            if !inserted.contains(&payment.id) {
                continue;
            }
            if payment.status == PaymentStatus::Cancelled {
                let cancelled = PaymentCancelled(outcome_of(&payment));
                announcements.push(Envelope::new(NAME, payment.id, &cancelled, &ctx));
                continue;
            }
            tracing::info!(payment_id = %payment.id, order_id = %payment.order_id, amount = %payment.amount, correlation_id = %ctx.correlation_id, "payment processing");
            charges.push(Work {
                payment_id: payment.id,
                context: ctx,
                payment: Some(payment),
            });
        }
        outbox::add_all(&mut tx, &announcements).await?;
        tx.commit().await?;
        for work in charges {
            self.processor.submit(work);
        }
        Ok(())
    }

    async fn order_cancelled(
        &self,
        event: &Envelope,
        order: OrderCancelled,
    ) -> Result<(), HandlerError> {
        // A refund talks to the provider, which must not happen inside a transaction: do it
        // first (it is idempotent per payment), then record it.
        let before = store::find_by_order(&self.db, order.order_id).await?;
        let refunded_already = match &before {
            Some(p) if p.status == PaymentStatus::Approved => {
                self.provider
                    .refund(p.id, p.amount)
                    .await
                    .map_err(HandlerError::new)?;
                true
            }
            _ => false,
        };
        let ctx = EventContext::caused_by(event);
        let mut tx = self.db.begin().await?;
        if !inbox::record(&mut tx, NAME, event.id).await? {
            tx.rollback().await?;
            return Ok(());
        }
        store::note_order(&mut tx, order.order_id, true).await?;
        let Some(payment) =
            store::find_by_order_for_update(&self.db, &mut tx, order.order_id).await?
        else {
            // No payment yet: when order.created arrives it finds the order cancelled.
            tx.commit().await?;
            return Ok(());
        };
        let next = match payment.status.on_order_cancelled() {
            OnOrderCancelled::Cancel => {
                store::transition(
                    &mut tx,
                    payment.id,
                    PaymentStatus::Processing,
                    PaymentStatus::Cancelled,
                    Some("order cancelled"),
                    None,
                )
                .await?;
                Some(Envelope::new(
                    NAME,
                    payment.id,
                    &PaymentCancelled(outcome_of(&payment)),
                    &ctx,
                ))
            }
            OnOrderCancelled::Refund if refunded_already => {
                store::transition(
                    &mut tx,
                    payment.id,
                    PaymentStatus::Approved,
                    PaymentStatus::Refunded,
                    Some("order cancelled"),
                    None,
                )
                .await?;
                Some(Envelope::new(
                    NAME,
                    payment.id,
                    &PaymentRefunded(outcome_of(&payment)),
                    &ctx,
                ))
            }
            OnOrderCancelled::Refund => {
                // Approved between our read and our lock: try again, and refund then.
                tx.rollback().await?;
                return Err(HandlerError::new(
                    "payment was approved while the cancellation was handled; retrying",
                ));
            }
            OnOrderCancelled::Nothing => None,
        };
        if let Some(next) = &next {
            outbox::add(&mut tx, next).await?;
        }
        tx.commit().await?;
        if next.is_some() {
            self.cache.remove(&crate::api::cache_key(payment.id)).await;
            tracing::info!(payment_id = %payment.id, order_id = %order.order_id, from = payment.status.as_str(), "payment cancelled with its order");
        }
        Ok(())
    }
}

#[async_trait]
impl Handler for OrderEvents {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError> {
        match event.event_type.as_str() {
            OrderCreated::TYPE => self.orders_created(std::slice::from_ref(event)).await,
            OrderCancelled::TYPE => self.order_cancelled(event, event.decode()?).await,
            other => Err(HandlerError::new(format!(
                "payments does not handle {other}"
            ))),
        }
    }

    /// A run of new orders shares one transaction; a batch with a cancellation in it (which
    /// talks to the provider) is handled event by event.
    async fn handle_batch(&self, events: &[Envelope]) -> Result<(), HandlerError> {
        if events.iter().all(|e| e.event_type == OrderCreated::TYPE) {
            self.orders_created(events).await
        } else {
            one_by_one(self, events).await
        }
    }
}
