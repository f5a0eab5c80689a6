//! The one event-handler loop every service uses: decode, record in the inbox, apply in the
//! transaction, put the events the change causes in the outbox, commit, and only then start the
//! work that must follow the commit. A service writes only [`Apply`]: what its events mean.
//!
//! Deliveries that arrive together are handled as one batch in one transaction. A malformed
//! event fails the whole batch before anything is written; the bus then hands each event over on
//! its own, so only that one is retried and dead-lettered.

use std::collections::HashSet;

use async_trait::async_trait;
use kassa_contracts::Envelope;

use crate::{
    bus::{Batching, Handler, HandlerError},
    db::{Db, Tx},
    inbox, outbox,
};

/// An event the consumer has not handled before, as it reads it.
pub struct Fresh<'a, E> {
    pub envelope: &'a Envelope,
    pub event: E,
}

/// What applying a batch changed: the events it causes, and the work to start once they and the
/// change are committed.
pub struct Applied<A> {
    pub publish: Vec<Envelope>,
    pub after_commit: A,
}

impl<A: Default> Applied<A> {
    /// Events to publish and nothing to do after the commit.
    pub fn publish(publish: Vec<Envelope>) -> Self {
        Applied {
            publish,
            after_commit: A::default(),
        }
    }
}

/// What a consumer's events mean. The platform opens the transaction, keeps the inbox and the
/// outbox, and commits.
#[async_trait]
pub trait Apply: Send + Sync + 'static {
    /// An event as the consumer reads it.
    type Event: Send + Sync;
    /// Work to start once the batch has committed (charges to make, caches to clear).
    type AfterCommit: Send + Default;

    /// How many events a batch takes, and how long the bus waits to fill one.
    const BATCHING: Batching = Batching::PROMPT;

    /// Reads one event; an error names what is wrong with it.
    fn decode(&self, event: &Envelope) -> Result<Self::Event, HandlerError>;

    /// Applies events handled for the first time (each once, in delivery order) inside `tx`.
    async fn apply(
        &self,
        tx: &mut Tx,
        events: Vec<Fresh<'_, Self::Event>>,
    ) -> Result<Applied<Self::AfterCommit>, HandlerError>;

    /// Starts what must follow the commit. Called only after the transaction committed.
    async fn committed(&self, _work: Self::AfterCommit) {}
}

/// A consumer: its inbox name, its database, and what its events mean.
pub struct Inboxed<A> {
    consumer: &'static str,
    db: Db,
    apply: A,
}

impl<A: Apply> Inboxed<A> {
    pub fn new(consumer: &'static str, db: Db, apply: A) -> Self {
        Inboxed {
            consumer,
            db,
            apply,
        }
    }
}

#[async_trait]
impl<A: Apply> Handler for Inboxed<A> {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError> {
        self.handle_batch(std::slice::from_ref(event)).await
    }

    fn batching(&self) -> Batching {
        A::BATCHING
    }

    async fn handle_batch(&self, events: &[Envelope]) -> Result<(), HandlerError> {
        let decoded = events
            .iter()
            .map(|e| self.apply.decode(e))
            .collect::<Result<Vec<_>, _>>()?;
        let ids: Vec<_> = events.iter().map(|e| e.id).collect();
        let mut tx = self.db.begin().await?;
        let mut first_time: HashSet<_> = inbox::record_all(&mut tx, self.consumer, &ids).await?;
        // Each event once, even if it came twice in the batch; repeats of earlier ones not at all.
        let fresh: Vec<_> = events
            .iter()
            .zip(decoded)
            .filter(|(e, _)| first_time.remove(&e.id))
            .map(|(envelope, event)| Fresh { envelope, event })
            .collect();
        if fresh.is_empty() {
            tx.rollback().await?;
            return Ok(());
        }
        let applied = self.apply.apply(&mut tx, fresh).await?;
        outbox::add_all(&mut tx, &applied.publish).await?;
        tx.commit().await?;
        self.apply.committed(applied.after_commit).await;
        Ok(())
    }
}
