//! Giving money back. A refund is decided in a transaction (a cancelled order's approved payment;
//! a charge the provider approved after its payment was cancelled) that also writes a row in
//! `refunds`; this loop asks the provider until it confirms, then records the effect and removes
//! the row. A crash, a provider outage or a restart delays a refund; nothing forgets it.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use kassa_contracts::{
    Envelope,
    events::{PaymentOutcome, PaymentRefunded},
};
use kassa_platform::{
    cache::Cache,
    db::{Db, DbError},
    outbox,
    shutdown::Shutdown,
};
use tokio::sync::Notify;

use crate::{
    NAME,
    domain::{PaymentStatus, RefundKind},
    provider::PaymentProvider,
    store::{self, DueRefund},
};

/// Refunds claimed per round.
const BATCH: usize = 64;
/// How long a claimed refund is this process's to finish.
const LEASE: Duration = Duration::from_secs(60);
/// The longest wait between two attempts of one refund.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Attempts after which a refund that is still not confirmed is reported as stuck (counted in
/// `kassa_payments_refunds_stuck_total` and logged as an error), about half an hour in.
const STUCK_AFTER: i64 = 15;

/// Wakes the refund loop when a transaction has asked for a refund.
#[derive(Clone, Default)]
pub struct Refunds {
    wake: Arc<Notify>,
}

impl Refunds {
    /// Call after committing a transaction that requested refunds.
    pub fn requested(&self) {
        self.wake.notify_one();
    }
}

pub struct RefundLoop {
    pub db: Db,
    pub provider: Arc<dyn PaymentProvider>,
    pub cache: Arc<dyn Cache>,
    pub refunds: Refunds,
    /// How often to look for refunds due again, without being woken.
    pub poll: Duration,
}

/// The wait after `attempts` failed attempts: one second, doubling, at most five minutes.
fn backoff(attempts: i64) -> Duration {
    let exponent = attempts.clamp(1, 16) as u32 - 1;
    Duration::from_secs(1u64 << exponent).min(MAX_BACKOFF)
}

impl RefundLoop {
    pub async fn run(self, shutdown: Shutdown) {
        loop {
            loop {
                match store::claim_due_refunds(&self.db, BATCH, LEASE).await {
                    Ok(due) if due.is_empty() => break,
                    Ok(due) => {
                        let rounds = due.into_iter().map(|d| self.give_back(d));
                        futures_util::future::join_all(rounds).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not look for refunds due; will retry");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = self.refunds.wake.notified() => {}
                _ = tokio::time::sleep(self.poll) => {}
                _ = shutdown.wait() => return,
            }
        }
    }

    /// One attempt at one refund.
    async fn give_back(&self, due: DueRefund) {
        let id = due.payment_id;
        if let Err(e) = self.try_give_back(&due).await {
            let retry_in = backoff(due.attempts);
            if due.attempts >= STUCK_AFTER {
                // Still retried, but someone should look: money is owed and not moving.
                metrics::counter!("kassa_payments_refunds_stuck_total").increment(1);
                tracing::error!(payment_id = %id, attempts = due.attempts, error = %e, correlation_id = %due.context.correlation_id, "refund still not confirmed; needs attention");
            } else {
                tracing::warn!(payment_id = %id, attempts = due.attempts, retry_in_secs = retry_in.as_secs(), error = %e, correlation_id = %due.context.correlation_id, "refund not confirmed yet; will retry");
            }
            let at = Utc::now() + chrono::Duration::from_std(retry_in).unwrap_or_default();
            if let Err(e) = store::refund_failed(&self.db, id, &e.to_string(), at).await {
                // The lease runs out and the refund is claimed again.
                tracing::warn!(payment_id = %id, error = %e, "could not record a failed refund attempt");
            }
        }
    }

    async fn try_give_back(&self, due: &DueRefund) -> Result<(), RefundFailure> {
        let Some(payment) = store::find(&self.db, due.payment_id).await? else {
            return Err(RefundFailure::Missing);
        };
        self.provider
            .refund(
                payment.id,
                payment.amount,
                payment.provider_reference.as_deref(),
            )
            .await
            .map_err(|e| RefundFailure::Provider(e.to_string()))?;
        let mut tx = self.db.begin().await?;
        let refunded = match (due.kind, payment.status) {
            (RefundKind::Refund, PaymentStatus::Approved) => {
                store::transition(
                    &mut tx,
                    &payment,
                    PaymentStatus::Refunded,
                    Some("order cancelled"),
                    None,
                )
                .await?
            }
            // Refunded already (a refund confirmed twice), or a void, which leaves the
            // payment CANCELLED.
            (RefundKind::Refund | RefundKind::Void, _) => None,
        };
        if refunded.is_some() {
            let body = PaymentOutcome {
                payment_id: payment.id,
                order_id: payment.order_id,
                amount_minor: payment.amount.minor(),
                currency: payment.amount.currency().code().to_owned(),
                reason: Some("order cancelled".into()),
                reference: payment.provider_reference.clone(),
            };
            outbox::add(
                &mut tx,
                &Envelope::new(NAME, payment.id, &PaymentRefunded(body), &due.context),
            )
            .await?;
        }
        store::refund_confirmed(&mut tx, payment.id).await?;
        tx.commit().await?;
        if let Some(refunded) = refunded {
            // Beside the loop: a Redis outage must not slow the refunds down.
            crate::api::cache_payments_beside(self.cache.clone(), vec![refunded]);
        }
        metrics::counter!("kassa_payments_refunded_total", "kind" => due.kind.as_str())
            .increment(1);
        tracing::info!(payment_id = %payment.id, order_id = %payment.order_id, kind = due.kind.as_str(), correlation_id = %due.context.correlation_id, "money given back");
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
enum RefundFailure {
    #[error("the payment no longer exists")]
    Missing,
    #[error("{0}")]
    Provider(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }
}
