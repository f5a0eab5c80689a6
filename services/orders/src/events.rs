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
    db::Db,
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

#[async_trait]
impl Handler for PaymentOutcomes {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError> {
        let (outcome, approved): (PaymentOutcome, bool) = match event.event_type.as_str() {
            PaymentApproved::TYPE => (event.decode::<PaymentApproved>()?.0, true),
            PaymentDeclined::TYPE => (event.decode::<PaymentDeclined>()?.0, false),
            PaymentFailed::TYPE => (event.decode::<PaymentFailed>()?.0, false),
            other => return Err(HandlerError::new(format!("orders does not handle {other}"))),
        };
        let mut tx = self.db.begin().await?;
        if !inbox::record(&mut tx, SERVICE, event.id).await? {
            tx.rollback().await?;
            return Ok(());
        }
        let order = store::find_for_update(&self.db, &mut tx, outcome.order_id)
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
                    &mut tx,
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
                outbox::add(&mut tx, &next).await?;
                tracing::info!(order_id = %order.id, status = status.as_str(), "order settled by its payment");
            }
            Transition::Ignore => {}
            Transition::Refuse => {
                tracing::warn!(order_id = %order.id, status = order.status.as_str(), event = %event.event_type, "event contradicts the order's status; ignored");
            }
        }
        tx.commit().await?;
        Ok(())
    }
}
