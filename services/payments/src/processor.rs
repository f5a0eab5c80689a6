//! Charges PROCESSING payments through the provider, many at once.
//!
//! Event handling only records a PROCESSING payment and hands its id here, so provider latency
//! never holds a message or a database transaction: up to `max_in_flight` charges wait on the
//! provider at once. Outcomes that arrive together are recorded with their events in one
//! transaction. A payment whose process died mid-charge keeps its PROCESSING status and
//! lease; once the lease runs out the sweep takes it over and charges again with the same payment
//! id, which the provider treats as the same charge.

use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, Instant},
};

use kassa_contracts::{
    Envelope, EventContext,
    events::{PaymentApproved, PaymentDeclined, PaymentFailed, PaymentOutcome, PaymentReceipt},
};
use kassa_platform::{cache::Cache, db::Db, outbox, shutdown::Shutdown};
use tokio::sync::{Semaphore, mpsc};
use uuid::Uuid;

use crate::{
    NAME,
    cards::{Cards, Lookup},
    domain::{ChargeOutcome, Payment, PaymentStatus, RefundKind},
    provider::{Charged, PaymentProvider},
    refunds::Refunds,
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
    /// The payment as its creator just committed it, which saves reading it back; `None` to
    /// read it (a payment taken over from another process).
    pub payment: Option<Payment>,
    /// When it was handed over.
    pub handed_at: Instant,
}

/// How long a handed-over payment may wait for a slot and still be charged without reading its
/// status again. A cancellation inside that window is caught after the charge instead: the
/// approval finds the payment CANCELLED and the charge is voided through a refund request.
const FRESH: Duration = Duration::from_millis(50);

/// Payments handed over and not yet started, at most; a handler that finds the queue full waits,
/// which holds its delivery and so slows the broker's deliveries down to what the provider takes.
const QUEUE: usize = 1024;
/// Payments started together, re-read with one query.
const START_BATCH: usize = 256;

/// The handle event handlers give new payments to.
#[derive(Clone)]
pub struct Processor {
    queue: mpsc::Sender<Work>,
}

impl Processor {
    /// Hands a committed PROCESSING payment over; waits while the queue is full.
    pub async fn submit(&self, work: Work) {
        let id = work.payment_id;
        if self.queue.send(work).await.is_err() {
            // The loop is gone: the process is stopping. The payment keeps its lease, and the
            // sweep of whichever process runs next charges it.
            tracing::debug!(payment_id = %id, "processor stopped; the lease sweep will charge this payment");
        }
    }
}

pub struct ProcessorLoop {
    db: Db,
    provider: Arc<dyn PaymentProvider>,
    cards: Arc<Cards>,
    cache: Arc<dyn Cache>,
    refunds: Refunds,
    settings: ProcessorSettings,
    queue: mpsc::Receiver<Work>,
}

pub fn processor(
    db: Db,
    provider: Arc<dyn PaymentProvider>,
    cards: Arc<Cards>,
    cache: Arc<dyn Cache>,
    refunds: Refunds,
    settings: ProcessorSettings,
) -> (Processor, ProcessorLoop) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (
        Processor { queue: tx },
        ProcessorLoop {
            db,
            provider,
            cards,
            cache,
            refunds,
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
        // Bounded: a charge keeps its slot until its outcome is queued, so outcomes waiting to be
        // recorded (queued, or waiting to be) never outnumber twice the charges allowed at once.
        let (to_settle, settle_queue) = mpsc::channel(self.settings.max_in_flight.max(1));
        let settler = tokio::spawn(settle_loop(
            self.db.clone(),
            self.cache.clone(),
            self.refunds.clone(),
            settle_queue,
        ));
        loop {
            let work = tokio::select! {
                Some(first) = self.queue.recv() => {
                    let mut work = vec![first];
                    // Never more than there are slots: the batch's slots are all taken before
                    // its task starts, so a batch larger than the limit would wait for itself.
                    while work.len() < START_BATCH.min(self.settings.max_in_flight) {
                        match self.queue.try_recv() {
                            Ok(more) => work.push(more),
                            Err(_) => break,
                        }
                    }
                    work
                }
                _ = sweep.tick() => {
                    let room = slots.available_permits().min(1000);
                    if room == 0 { continue; }
                    match store::claim_stalled(&self.db, room, self.settings.lease).await {
                        Ok(ids) => {
                            if !ids.is_empty() {
                                tracing::info!(count = ids.len(), "taking over payments left PROCESSING");
                            }
                            ids.into_iter().map(|(payment_id, context)| Work { payment_id, context, payment: None, handed_at: Instant::now() }).collect()
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "could not look for stalled payments");
                            Vec::new()
                        }
                    }
                }
                _ = shutdown.wait() => break,
            };
            let mut permits = Vec::with_capacity(work.len());
            for _ in &work {
                match slots.clone().acquire_owned().await {
                    Ok(permit) => permits.push(permit),
                    Err(_) => break,
                }
            }
            let (db, provider, cards, to_settle) = (
                self.db.clone(),
                self.provider.clone(),
                self.cards.clone(),
                to_settle.clone(),
            );
            // The batch is re-read and charged in a task of its own, so the loop goes on taking
            // work while the database answers.
            tokio::spawn(async move {
                // A payment cancelled while it waited for a slot is not charged. One read back
                // from the database (taken over) is checked when it is read; one handed over
                // moments ago has had no time to wait.
                let waited: HashSet<Uuid> = work
                    .iter()
                    .filter(|w| w.payment.is_some() && w.handed_at.elapsed() >= FRESH)
                    .map(|w| w.payment_id)
                    .collect();
                let still = if waited.is_empty() {
                    HashSet::new()
                } else {
                    let ids: Vec<Uuid> = waited.iter().copied().collect();
                    match store::processing_among(&db, &ids).await {
                        Ok(still) => still,
                        Err(e) => {
                            // Their leases run out and the sweep starts them again.
                            tracing::warn!(payments = waited.len(), error = %e, "could not re-read payments before charging; will retry after the lease");
                            return;
                        }
                    }
                };
                let charges = work.into_iter().zip(permits).filter_map(|(w, permit)| {
                    if waited.contains(&w.payment_id) && !still.contains(&w.payment_id) {
                        tracing::info!(payment_id = %w.payment_id, correlation_id = %w.context.correlation_id, "payment no longer PROCESSING; not charged");
                        return None;
                    }
                    let (db, provider, cards, to_settle) = (&db, &provider, &*cards, &to_settle);
                    Some(async move {
                        match charge(db, provider.as_ref(), cards, w).await {
                            Ok(Some(settlement)) => {
                                if to_settle.send(settlement).await.is_err() {
                                    // The settler stopped with the process: the payment stays
                                    // PROCESSING under its lease and is charged again later.
                                    tracing::warn!("outcome not recorded: stopping");
                                }
                            }
                            Ok(None) => {}
                            // The lease runs out and the sweep tries again.
                            Err(e) => {
                                tracing::warn!(error = %e, "could not read a payment to charge; will retry after the lease")
                            }
                        }
                        drop(permit);
                    })
                });
                futures_util::future::join_all(charges).await;
            });
        }
        // Charges in progress finish (or their lease lets another process finish them), then
        // the last outcomes are recorded.
        let all = self.settings.max_in_flight as u32;
        if tokio::time::timeout(Duration::from_secs(10), slots.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!(
                "charges still waiting on the provider at shutdown; their leases let the next process finish them"
            );
        }
        drop(to_settle);
        match tokio::time::timeout(Duration::from_secs(10), settler).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "the settler stopped abnormally"),
            Err(_) => tracing::warn!(
                "outcomes still being recorded at shutdown; their payments are charged again after the lease"
            ),
        }
    }
}

/// A provider's answer about one payment, waiting to be recorded.
struct Settlement {
    payment: Payment,
    outcome: ChargeOutcome,
    context: EventContext,
}

/// Asks the provider about one PROCESSING payment.
async fn charge(
    db: &Db,
    provider: &dyn PaymentProvider,
    cards: &Cards,
    work: Work,
) -> Result<Option<Settlement>, kassa_platform::db::DbError> {
    let payment = match work.payment {
        Some(payment) => payment,
        None => match store::find(db, work.payment_id).await? {
            Some(payment) => payment,
            None => return Ok(None),
        },
    };
    if payment.status != PaymentStatus::Processing {
        return Ok(None);
    }
    let card = if payment.saved_card {
        match cards.of(payment.user_id).await {
            Lookup::Found(card) => Some(card),
            Lookup::Missing(reason) => {
                return Ok(Some(Settlement {
                    payment,
                    outcome: ChargeOutcome::Declined { reason },
                    context: work.context,
                }));
            }
            Lookup::Unavailable(reason) => {
                tracing::warn!(payment_id = %payment.id, %reason, "saved card not looked up; the payment waits for its lease and is tried again");
                return Ok(None);
            }
        }
    } else {
        None
    };
    let outcome = match provider
        .charge(payment.id, payment.amount, card.as_ref())
        .await
    {
        Charged::Settled(outcome) => outcome,
        Charged::Waits { reference } => {
            if let Some(reference) = reference {
                store::keep_reference(db, payment.id, &reference).await?;
            }
            tracing::warn!(payment_id = %payment.id, "the provider has not settled the charge; the payment waits for its lease and is asked about again");
            return Ok(None);
        }
    };
    Ok(Some(Settlement {
        payment,
        outcome,
        context: work.context,
    }))
}

/// Outcomes that arrive together are recorded in one transaction: one commit for many payments.
const MAX_SETTLEMENTS_PER_COMMIT: usize = 256;

async fn settle_loop(
    db: Db,
    cache: Arc<dyn Cache>,
    refunds: Refunds,
    mut queue: mpsc::Receiver<Settlement>,
) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_SETTLEMENTS_PER_COMMIT {
            match queue.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        let ids: Vec<Uuid> = batch.iter().map(|s| s.payment.id).collect();
        if let Err(e) = settle(&db, &cache, &refunds, batch).await {
            // The payments stay PROCESSING under their lease; the sweep charges them again
            // (the provider treats that as the same charge) and records them then.
            tracing::warn!(payments = ids.len(), error = %e, "outcomes not recorded; will retry after the lease");
        }
    }
}

/// Records one outcome the provider reported on its own (a webhook), as a charge's answer is
/// recorded: whether it was taken (the payment settled, or, cancelled meanwhile, its charge
/// asked to be voided); `payment` is as it was when the charge went out.
pub async fn record(
    db: &Db,
    cache: &Arc<dyn Cache>,
    refunds: &Refunds,
    payment: Payment,
    outcome: ChargeOutcome,
    context: EventContext,
) -> Result<bool, kassa_platform::db::DbError> {
    let id = payment.id;
    settle(
        db,
        cache,
        refunds,
        vec![Settlement {
            payment,
            outcome,
            context,
        }],
    )
    .await?;
    Ok(store::find(db, id)
        .await?
        .is_some_and(|p| p.status != PaymentStatus::Processing))
}

/// Records provider outcomes with their events, and asks for the charges of payments cancelled
/// while the provider was deciding to be voided, in the same transaction.
async fn settle(
    db: &Db,
    cache: &Arc<dyn Cache>,
    refunds: &Refunds,
    batch: Vec<Settlement>,
) -> Result<(), kassa_platform::db::DbError> {
    // One decision per payment: a payment charged twice (taken over while its first charge was
    // still out) is recorded once; the provider treats both charges as one.
    let mut seen = HashSet::new();
    let mut decided: Vec<(&Settlement, store::Settled)> = batch
        .iter()
        .filter(|s| seen.insert(s.payment.id))
        .filter_map(|s| {
            let status = s.payment.status.settle(&s.outcome)?;
            let (reason, reference) = match &s.outcome {
                ChargeOutcome::Approved { reference } => (None, Some(reference.as_str())),
                ChargeOutcome::Declined { reason } | ChargeOutcome::Failed { reason } => {
                    (Some(reason.as_str()), None)
                }
            };
            let id = s.payment.id;
            Some((
                s,
                store::Settled {
                    id,
                    status,
                    reason,
                    reference,
                },
            ))
        })
        .collect();
    if decided.is_empty() {
        return Ok(());
    }
    // One locking order for every batch, so two replicas never deadlock on the same payments.
    decided.sort_by_key(|(_, d)| d.id);
    let mut tx = db.begin().await?;
    let now = kassa_contracts::now();
    let changed = store::settle_all(&mut tx, decided.iter().map(|(_, d)| d), now).await?;
    // An approval the payment no longer takes: voided if the payment was cancelled while the
    // provider was deciding; not if another charge of the same payment (taken over after its
    // lease) settled it first, for that one keeps what it was paid.
    let unrecorded_approvals: Vec<Uuid> = decided
        .iter()
        .filter(|(_, d)| d.status == PaymentStatus::Approved && !changed.contains(&d.id))
        .map(|(_, d)| d.id)
        .collect();
    let cancelled = store::cancelled_among(&mut tx, &unrecorded_approvals).await?;
    let mut recorded = Vec::with_capacity(decided.len());
    let mut announcements = Vec::with_capacity(decided.len());
    let mut to_void = Vec::new();
    let mut voided_charges = Vec::new();
    for (s, d) in decided {
        if !changed.contains(&s.payment.id) {
            if cancelled.contains(&s.payment.id) {
                to_void.push((s.payment.id, RefundKind::Void, &s.context));
                // The provider's id for the charge is what a void names.
                if let Some(reference) = d.reference {
                    voided_charges.push((s.payment.id, reference));
                }
            }
            continue;
        }
        let body = PaymentOutcome {
            payment_id: s.payment.id,
            order_id: s.payment.order_id,
            amount_minor: s.payment.amount.minor(),
            currency: s.payment.amount.currency().code().to_owned(),
            reason: d.reason.map(str::to_owned),
            reference: d.reference.map(str::to_owned),
        };
        let event = match &s.outcome {
            ChargeOutcome::Approved { .. } => {
                Envelope::new(NAME, s.payment.id, &PaymentApproved(body), &s.context)
            }
            ChargeOutcome::Declined { .. } => {
                Envelope::new(NAME, s.payment.id, &PaymentDeclined(body), &s.context)
            }
            ChargeOutcome::Failed { .. } => {
                Envelope::new(NAME, s.payment.id, &PaymentFailed(body), &s.context)
            }
        };
        announcements.push(event);
        // A signed-up customer's payment: their receipt too.
        if let (true, Some(user_id)) = (s.payment.saved_card, s.payment.user_id) {
            let receipt = PaymentReceipt {
                payment_id: s.payment.id,
                order_id: s.payment.order_id,
                user_id,
                amount_minor: s.payment.amount.minor(),
                currency: s.payment.amount.currency().code().to_owned(),
                approved: matches!(s.outcome, ChargeOutcome::Approved { .. }),
                item: s.payment.item.clone(),
                reference: d.reference.map(str::to_owned),
                reason: d.reason.map(str::to_owned),
            };
            announcements.push(Envelope::new(NAME, s.payment.id, &receipt, &s.context));
        }
        let mut stored = s.payment.clone();
        stored.status = d.status;
        if let Some(reason) = d.reason {
            stored.reason = Some(reason.to_owned());
        }
        if let Some(reference) = d.reference {
            stored.provider_reference = Some(reference.to_owned());
        }
        stored.updated_at = now;
        recorded.push((s, stored));
    }
    outbox::add_all(&mut tx, &announcements).await?;
    store::keep_references(&mut tx, &voided_charges).await?;
    store::request_refunds(&mut tx, &to_void).await?;
    tx.commit().await?;
    if !to_void.is_empty() {
        tracing::info!(
            payments = to_void.len(),
            "approved after their payment was cancelled: charges to be voided"
        );
        refunds.requested();
    }
    for (s, stored) in &recorded {
        metrics::counter!("kassa_payments_settled_total", "status" => stored.status.as_str())
            .increment(1);
        tracing::info!(payment_id = %s.payment.id, order_id = %s.payment.order_id, status = stored.status.as_str(), correlation_id = %s.context.correlation_id, "payment settled");
    }
    // The cache is brought up to date beside the loop, which goes on recording outcomes; a
    // write that lands late still wins over older states (the entries are versioned).
    let stored: Vec<Payment> = recorded.into_iter().map(|(_, stored)| stored).collect();
    crate::api::cache_payments_beside(cache.clone(), stored);
    Ok(())
}
