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

    /// Whether every event is kept whole, for good, in place of its inbox entry: for a
    /// projection made again from its events when what it makes of them changes
    /// ([`inbox::kept`] replays them). A redelivered event is then recognised however late.
    const KEEPS_EVENTS: bool = false;

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
        let mut tx = self.db.begin().await?;
        let mut first_time: HashSet<_> = if A::KEEPS_EVENTS {
            inbox::keep_all(&mut tx, self.consumer, events).await?
        } else {
            let ids: Vec<_> = events.iter().map(|e| e.id).collect();
            inbox::record_all(&mut tx, self.consumer, &ids).await?
        };
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use kassa_contracts::{EventContext, events::OrderCancelled};
    use uuid::Uuid;

    use super::*;
    use crate::{
        db::sql,
        migrate::{self, PLATFORM},
        testing::Throwaway,
    };

    /// Counts the events it is given, keeping them or not.
    struct Count<const KEEP: bool>(Mutex<Vec<Uuid>>);

    #[async_trait]
    impl<const KEEP: bool> Apply for Count<KEEP> {
        type Event = ();
        type AfterCommit = ();
        const KEEPS_EVENTS: bool = KEEP;

        fn decode(&self, _: &Envelope) -> Result<(), HandlerError> {
            Ok(())
        }

        async fn apply(
            &self,
            _: &mut Tx,
            events: Vec<Fresh<'_, ()>>,
        ) -> Result<Applied<()>, HandlerError> {
            let mut seen = self.0.lock().unwrap();
            seen.extend(events.iter().map(|f| f.envelope.id));
            Ok(Applied::publish(Vec::new()))
        }
    }

    fn event() -> Envelope {
        let order_id = Uuid::now_v7();
        Envelope::new(
            "orders",
            order_id,
            &OrderCancelled { order_id },
            &EventContext::new("test"),
        )
    }

    async fn count(db: &Db, table: &str) -> i64 {
        crate::db::sql_assembled(format!("SELECT count(*) AS n FROM {table}"))
            .fetch_one(db)
            .await
            .unwrap()
            .get("n")
            .unwrap()
    }

    /// A consumer that keeps its events has each applied once, however late it comes again
    /// (the kept events are never swept, unlike inbox rows), writes no inbox rows, and gets
    /// them back whole, page by page, in the order they were made.
    async fn kept_events_are_the_inbox_of_a_consumer_that_replays_them(t: Throwaway) {
        migrate::run(&t.db, &[&PLATFORM]).await.unwrap();
        let keeper = Inboxed::new("keeper", t.db.clone(), Count::<true>(Mutex::default()));
        let events: Vec<Envelope> = (0..5).map(|_| event()).collect();
        // Delivered out of order, one of them twice in the batch.
        let mut batch = vec![events[3].clone(), events[0].clone(), events[3].clone()];
        batch.extend(events[1..3].iter().cloned());
        keeper.handle_batch(&batch).await.unwrap();
        keeper.handle(&events[4]).await.unwrap();
        // Redelivered after the inbox's retention has passed: nothing happens twice.
        sql("UPDATE inbox SET handled_at = $1")
            .bind(chrono::Utc::now() - chrono::Duration::days(365))
            .execute(&t.db)
            .await
            .unwrap();
        crate::housekeeping::sweep(&t.db).await.unwrap();
        keeper.handle_batch(&events).await.unwrap();
        let applied = keeper.apply.0.lock().unwrap().clone();
        assert_eq!(applied.len(), 5, "each event applied once: {applied:?}");
        assert_eq!(
            applied[..4],
            [events[3].id, events[0].id, events[1].id, events[2].id]
        );
        assert_eq!(count(&t.db, "inbox").await, 0);
        assert_eq!(count(&t.db, "kept_events").await, 5);

        // Replayed two at a time, in the order they were made, each as it came.
        let mut replayed = Vec::new();
        let mut after = None;
        loop {
            let page = inbox::kept(&t.db, "keeper", after, 2).await.unwrap();
            let Some(last) = page.last() else { break };
            assert!(page.len() <= 2);
            after = Some(last.id);
            replayed.extend(page.iter().map(|k| k.envelope().unwrap()));
        }
        // In id order, which is the order they were made in (UUIDv7 from one process).
        let mut by_id = events.clone();
        by_id.sort_by_key(|e| e.id);
        assert_eq!(replayed, by_id);
        assert!(
            inbox::kept(&t.db, "another", None, 10)
                .await
                .unwrap()
                .is_empty()
        );

        // A consumer that does not keep its events records them in the inbox only.
        let plain = Inboxed::new("plain", t.db.clone(), Count::<false>(Mutex::default()));
        plain.handle_batch(&events).await.unwrap();
        plain.handle_batch(&events).await.unwrap();
        assert_eq!(plain.apply.0.lock().unwrap().len(), 5);
        assert_eq!(count(&t.db, "inbox").await, 5);
        assert_eq!(count(&t.db, "kept_events").await, 5);
        t.drop_now().await;
    }

    crate::on_both_databases!(kept_events_are_the_inbox_of_a_consumer_that_replays_them);
}
