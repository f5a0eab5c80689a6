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
    bus::{Handler, HandlerError},
    cache::Cache,
    db::Db,
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
    async fn order_created(
        &self,
        event: &Envelope,
        order: OrderCreated,
    ) -> Result<(), HandlerError> {
        let currency = Currency::parse(&order.currency)
            .map_err(|e| HandlerError::new(format!("order.created currency: {e}")))?;
        let amount = Money::from_minor(order.amount_minor, currency)
            .map_err(|e| HandlerError::new(format!("order.created amount: {e}")))?;
        let ctx = EventContext::caused_by(event);
        let mut tx = self.db.begin().await?;
        if !inbox::record(&mut tx, SERVICE, event.id).await? {
            tx.rollback().await?;
            return Ok(());
        }
        let cancelled = store::note_order(&mut tx, order.order_id, false).await?;
        let status = if cancelled {
            PaymentStatus::Cancelled
        } else {
            PaymentStatus::Processing
        };
        let payment = Payment::for_order(order.order_id, order.user_id, amount, status);
        let inserted = store::insert(&mut tx, &payment, &ctx, self.lease).await?;
        if inserted && cancelled {
            outbox::add(
                &mut tx,
                &Envelope::new(
                    SERVICE,
                    payment.id,
                    &PaymentCancelled(outcome_of(&payment)),
                    &ctx,
                ),
            )
            .await?;
        }
        tx.commit().await?;
        if inserted && !cancelled {
            tracing::info!(payment_id = %payment.id, order_id = %order.order_id, amount = %amount, "payment processing");
            self.processor.submit(Work {
                payment_id: payment.id,
                context: ctx,
            });
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
            OrderCreated::TYPE => self.order_created(event, event.decode()?).await,
            OrderCancelled::TYPE => self.order_cancelled(event, event.decode()?).await,
            other => Err(HandlerError::new(format!(
                "payments does not handle {other}"
            ))),
        }
    }
}
