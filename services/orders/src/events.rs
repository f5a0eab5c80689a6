//! What orders does with payment outcomes: PAID on approval, FAILED on a decline or failure.

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
    db::{Db, Tx},
    inbox, outbox,
};

use crate::{SERVICE, domain::Transition, store};

/// The event types this consumer is bound to.
pub const TOPICS: [&str; 3] = [
    PaymentApproved::TYPE,
    PaymentDeclined::TYPE,
    PaymentFailed::TYPE,
];

pub struct PaymentOutcomes {
    pub db: Db,
}

impl PaymentOutcomes {
    /// Applies one payment outcome inside `tx`.
    async fn apply(&self, tx: &mut Tx, event: &Envelope) -> Result<(), HandlerError> {
        let (outcome, approved): (PaymentOutcome, bool) = match event.event_type.as_str() {
            PaymentApproved::TYPE => (event.decode::<PaymentApproved>()?.0, true),
            PaymentDeclined::TYPE => (event.decode::<PaymentDeclined>()?.0, false),
            PaymentFailed::TYPE => (event.decode::<PaymentFailed>()?.0, false),
            other => return Err(HandlerError::new(format!("orders does not handle {other}"))),
        };
        if !inbox::record(tx, SERVICE, event.id).await? {
            return Ok(());
        }
        let order = store::find_for_update(&self.db, tx, outcome.order_id)
            .await?
            .ok_or_else(|| {
                HandlerError::new(format!("order {} does not exist", outcome.order_id))
            })?;
        let transition = if approved {
            order.status.on_payment_approved()
        } else {
            order.status.on_payment_unsuccessful()
        };
        let ctx = EventContext::caused_by(event);
        match transition {
            Transition::To(status) => {
                store::set_status(
                    tx,
                    order.id,
                    status,
                    outcome.reason.as_deref(),
                    chrono::Utc::now(),
                )
                .await?;
                let next = if approved {
                    Envelope::new(
                        SERVICE,
                        order.id,
                        &OrderPaid {
                            order_id: order.id,
                            payment_id: outcome.payment_id,
                        },
                        &ctx,
                    )
                } else {
                    let reason = outcome
                        .reason
                        .clone()
                        .unwrap_or_else(|| event.event_type.clone());
                    Envelope::new(
                        SERVICE,
                        order.id,
                        &OrderFailed {
                            order_id: order.id,
                            reason,
                        },
                        &ctx,
                    )
                };
                outbox::add(tx, &next).await?;
                tracing::info!(order_id = %order.id, status = status.as_str(), correlation_id = %event.correlationid, "order settled by its payment");
            }
            Transition::Ignore => {}
            Transition::Refuse => {
                tracing::warn!(order_id = %order.id, status = order.status.as_str(), event = %event.event_type, correlation_id = %event.correlationid, "event contradicts the order's status; ignored");
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Handler for PaymentOutcomes {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError> {
        self.handle_batch(std::slice::from_ref(event)).await
    }

    /// All outcomes in one transaction: one commit for the batch.
    async fn handle_batch(&self, events: &[Envelope]) -> Result<(), HandlerError> {
        let mut tx = self.db.begin().await?;
        for event in events {
            self.apply(&mut tx, event).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
