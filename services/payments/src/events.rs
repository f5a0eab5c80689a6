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
    db::{Db, Tx},
    inbox, outbox,
};

use crate::{
    SERVICE,
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

impl OrderEvents {
    /// Records a PROCESSING payment for a new order inside `tx`, and returns the charge to
    /// start once `tx` commits (none for a repeat, or for an order already cancelled).
    async fn apply_created(
        &self,
        tx: &mut Tx,
        event: &Envelope,
    ) -> Result<Option<Work>, HandlerError> {
        let order: OrderCreated = event.decode()?;
        let currency = Currency::parse(&order.currency)
            .map_err(|e| HandlerError::new(format!("order.created currency: {e}")))?;
        let amount = Money::from_minor(order.amount_minor, currency)
            .map_err(|e| HandlerError::new(format!("order.created amount: {e}")))?;
        let ctx = EventContext::caused_by(event);
        if !inbox::record(tx, SERVICE, event.id).await? {
            return Ok(None);
        }
        let cancelled = store::note_order(tx, order.order_id, false).await?;
        let status = if cancelled {
            PaymentStatus::Cancelled
        } else {
            PaymentStatus::Processing
        };
        let payment = Payment::for_order(order.order_id, order.user_id, amount, status);
        if !store::insert(tx, &payment, &ctx, self.lease).await? {
            return Ok(None);
        }
        if cancelled {
            outbox::add(
                tx,
                &Envelope::new(
                    SERVICE,
                    payment.id,
                    &PaymentCancelled(outcome_of(&payment)),
                    &ctx,
                ),
            )
            .await?;
            return Ok(None);
        }
        tracing::info!(payment_id = %payment.id, order_id = %order.order_id, amount = %amount, correlation_id = %ctx.correlation_id, "payment processing");
        Ok(Some(Work {
            payment_id: payment.id,
            context: ctx,
            payment: Some(payment),
        }))
    }

    /// New orders in one transaction; their charges start once it commits.
    async fn orders_created(&self, events: &[Envelope]) -> Result<(), HandlerError> {
        let mut tx = self.db.begin().await?;
        let mut charges = Vec::with_capacity(events.len());
        for event in events {
            charges.extend(self.apply_created(&mut tx, event).await?);
        }
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
        if !inbox::record(&mut tx, SERVICE, event.id).await? {
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
                    SERVICE,
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
                    SERVICE,
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
