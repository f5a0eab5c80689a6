//! Charges PROCESSING payments through the provider, many at once.
//!
//! Event handling only records a PROCESSING payment and hands its id here, so provider latency
//! never holds a message or a database transaction: up to `max_in_flight` charges wait on the
//! provider at once. A payment whose process died mid-charge keeps its PROCESSING status and
//! lease; once the lease runs out the sweep takes it over and charges again with the same payment
//! id, which the provider treats as the same charge.

use std::{sync::Arc, time::Duration};

use kassa_contracts::{
    Envelope, EventContext,
    events::{PaymentApproved, PaymentDeclined, PaymentFailed, PaymentOutcome},
};
use kassa_platform::{cache::Cache, db::Db, outbox, shutdown::Shutdown};
use tokio::sync::{Semaphore, mpsc};
use uuid::Uuid;

use crate::{
    SERVICE,
    domain::{ChargeOutcome, PaymentStatus},
    provider::PaymentProvider,
    store,
};

/// How the processor paces itself.
#[derive(Debug, Clone)]
pub struct ProcessorSettings {
    /// Charges waiting on the provider at once, at most.
    pub max_in_flight: usize,
    /// How long a process owns a PROCESSING payment before another may take it over.
    pub lease: Duration,
    /// How often to look for payments whose owner is gone.
    pub sweep_every: Duration,
}

impl Default for ProcessorSettings {
    fn default() -> Self {
        ProcessorSettings {
            max_in_flight: 10_000,
            lease: Duration::from_secs(30),
            sweep_every: Duration::from_secs(1),
        }
    }
}

/// What a charge needs to know that the payment row does not say.
#[derive(Debug, Clone)]
pub struct Work {
    pub payment_id: Uuid,
    pub context: EventContext,
}

/// The handle event handlers give new payments to.
#[derive(Clone)]
pub struct Processor {
    queue: mpsc::UnboundedSender<Work>,
}

impl Processor {
    pub fn submit(&self, work: Work) {
        // If the loop is gone the process is stopping; the lease sweep picks the payment up later.
        let _ = self.queue.send(work);
    }
}

pub struct ProcessorLoop {
    db: Db,
    provider: Arc<dyn PaymentProvider>,
    cache: Arc<dyn Cache>,
    settings: ProcessorSettings,
    queue: mpsc::UnboundedReceiver<Work>,
}

pub fn processor(
    db: Db,
    provider: Arc<dyn PaymentProvider>,
    cache: Arc<dyn Cache>,
    settings: ProcessorSettings,
) -> (Processor, ProcessorLoop) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        Processor { queue: tx },
        ProcessorLoop {
            db,
            provider,
            cache,
            settings,
            queue: rx,
        },
    )
}

impl ProcessorLoop {
    pub async fn run(mut self, shutdown: Shutdown) {
        let slots = Arc::new(Semaphore::new(self.settings.max_in_flight));
        let mut sweep = tokio::time::interval(self.settings.sweep_every);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let this = Arc::new((self.db.clone(), self.provider.clone(), self.cache.clone()));
        loop {
            let work = tokio::select! {
                Some(work) = self.queue.recv() => vec![work],
                _ = sweep.tick() => {
                    let room = slots.available_permits().min(1000);
                    if room == 0 { continue; }
                    match store::claim_stalled(&self.db, room, self.settings.lease).await {
                        Ok(ids) => {
                            if !ids.is_empty() {
                                tracing::info!(count = ids.len(), "taking over payments left PROCESSING");
                            }
                            ids.into_iter().map(|(payment_id, context)| Work { payment_id, context }).collect()
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "could not look for stalled payments");
                            Vec::new()
                        }
                    }
                }
                _ = shutdown.wait() => break,
            };
            for w in work {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    break;
                };
                let this = this.clone();
                tokio::spawn(async move {
                    let (db, provider, cache) = &*this;
                    if let Err(e) = charge(db, provider.as_ref(), cache.as_ref(), &w).await {
                        // The lease runs out and the sweep tries again.
                        tracing::warn!(payment_id = %w.payment_id, error = %e, "charge not recorded; will retry after the lease");
                    }
                    drop(permit);
                });
            }
        }
        // Charges in progress finish (or their lease lets another process finish them).
        let all = self.settings.max_in_flight as u32;
        let _ = tokio::time::timeout(Duration::from_secs(10), slots.acquire_many(all)).await;
    }
}

/// Charges one payment and records the outcome with its event.
async fn charge(
    db: &Db,
    provider: &dyn PaymentProvider,
    cache: &dyn Cache,
    work: &Work,
) -> Result<(), kassa_platform::db::DbError> {
    let Some(payment) = store::find(db, work.payment_id).await? else {
        return Ok(());
    };
    if payment.status != PaymentStatus::Processing {
        return Ok(());
    }
    let outcome = provider.charge(payment.id, payment.amount).await;
    let Some(settled) = payment.status.settle(&outcome) else {
        return Ok(());
    };
    let (reason, reference) = match &outcome {
        ChargeOutcome::Approved { reference } => (None, Some(reference.as_str())),
        ChargeOutcome::Declined { reason } | ChargeOutcome::Failed { reason } => {
            (Some(reason.as_str()), None)
        }
    };
    let mut tx = db.begin().await?;
    if !store::transition(
        &mut tx,
        payment.id,
        PaymentStatus::Processing,
        settled,
        reason,
        reference,
    )
    .await?
    {
        tx.rollback().await?;
        // Cancelled while the provider was deciding: give back what it took.
        if settled == PaymentStatus::Approved {
            if let Err(e) = provider.refund(payment.id, payment.amount).await {
                tracing::error!(payment_id = %payment.id, error = %e, "could not void the charge of a cancelled payment");
            } else {
                tracing::info!(payment_id = %payment.id, "voided the charge of a payment cancelled meanwhile");
            }
        }
        return Ok(());
    }
    let body = PaymentOutcome {
        payment_id: payment.id,
        order_id: payment.order_id,
        amount_minor: payment.amount.minor(),
        currency: payment.amount.currency().code().to_owned(),
        reason: reason.map(str::to_owned),
    };
    let event = match settled {
        PaymentStatus::Approved => {
            Envelope::new(SERVICE, payment.id, &PaymentApproved(body), &work.context)
        }
        PaymentStatus::Declined => {
            Envelope::new(SERVICE, payment.id, &PaymentDeclined(body), &work.context)
        }
        _ => Envelope::new(SERVICE, payment.id, &PaymentFailed(body), &work.context),
    };
    outbox::add(&mut tx, &event).await?;
    tx.commit().await?;
    cache.remove(&crate::api::cache_key(payment.id)).await;
    metrics::counter!("kassa_payments_settled_total", "status" => settled.as_str()).increment(1);
    tracing::info!(payment_id = %payment.id, order_id = %payment.order_id, status = settled.as_str(), correlation_id = %work.context.correlation_id, "payment settled");
    Ok(())
}
