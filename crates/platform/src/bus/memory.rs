//! The in-process bus of the embedded mode. It is fed by the same outbox relay as RabbitMQ, and a
//! publish resolves only when every subscriber has handled the message or dead-lettered it, so
//! the outbox row outlives a crash in between.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use tokio::sync::{RwLock, Semaphore, mpsc, oneshot};
use uuid::Uuid;

use super::{BusError, EventBus, Message, RetryPolicy, Subscription, deliver, topic_matches};
use crate::{
    db::{Db, sql},
    shutdown::Shutdown,
};

/// Deliveries in progress per subscriber, at most.
const MAX_CONCURRENT_DELIVERIES: usize = 1024;

struct Subscriber {
    subscription: Subscription,
    slots: Arc<Semaphore>,
    /// Messages for this subscriber, each with where to report how its delivery ended.
    queue: mpsc::UnboundedSender<(Message, oneshot::Sender<Result<(), BusError>>)>,
}

/// Takes a subscriber's messages as they come and hands whatever arrived together (or, for a
/// handler that lingers, what came within its linger) to the handler as one batch; a batch that
/// fails is delivered message by message, each with its own retries. Each group runs as a task
/// of its own, so a handler's transaction never waits on whoever published.
async fn dispatch(
    subscriber: Arc<Subscriber>,
    mut queue: mpsc::UnboundedReceiver<(Message, oneshot::Sender<Result<(), BusError>>)>,
    policy: RetryPolicy,
    shutdown: Shutdown,
) {
    let batching = subscriber.subscription.handler.batching();
    loop {
        let first = tokio::select! {
            next = queue.recv() => match next {
                Some(first) => first,
                None => return,
            },
            // Messages still queued are abandoned: their outbox rows stay for the next start.
            _ = shutdown.wait() => return,
        };
        let started = tokio::time::Instant::now();
        let mut group = vec![first];
        while let Some(more) = batching.more(started, group.len(), queue.recv()).await {
            group.push(more);
        }
        tokio::spawn(deliver_group(
            subscriber.clone(),
            group,
            policy,
            shutdown.clone(),
        ));
    }
}

async fn deliver_group(
    subscriber: Arc<Subscriber>,
    group: Vec<(Message, oneshot::Sender<Result<(), BusError>>)>,
    policy: RetryPolicy,
    shutdown: Shutdown,
) {
    if group.len() > 1 {
        let envelopes: Option<Vec<kassa_contracts::Envelope>> = group
            .iter()
            .map(|(m, _)| kassa_contracts::Envelope::from_bytes(&m.body).ok())
            .collect();
        if let Some(envelopes) = envelopes {
            let batch = async {
                let _slot = subscriber.slots.acquire().await.ok()?;
                subscriber
                    .subscription
                    .handler
                    .handle_batch(&envelopes)
                    .await
                    .ok()
            };
            if batch.await.is_some() {
                for (_, done) in group {
                    let _ = done.send(Ok(()));
                }
                return;
            }
        }
    }
    let each = group.into_iter().map(|(message, done)| {
        let (subscriber, shutdown) = (subscriber.clone(), shutdown.clone());
        async move {
            let _ = done.send(deliver_to(subscriber, message, policy, shutdown).await);
        }
    });
    futures_util::future::join_all(each).await;
}

pub struct MemoryBus {
    subscribers: RwLock<Vec<Arc<Subscriber>>>,
    policy: RetryPolicy,
    shutdown: Shutdown,
    deliveries: Arc<Semaphore>,
}

/// Upper bound of deliveries tracked for draining.
const DRAIN_PERMITS: u32 = 1 << 20;

impl MemoryBus {
    pub fn new(policy: RetryPolicy, shutdown: Shutdown) -> Self {
        MemoryBus {
            subscribers: RwLock::new(Vec::new()),
            policy,
            shutdown,
            deliveries: Arc::new(Semaphore::new(DRAIN_PERMITS as usize)),
        }
    }
}

/// Hands `message` to one subscriber, retrying with backoff, and dead-letters it after the last
/// attempt. Runs as a task of its own, so a handler's transaction never waits on whoever
/// published the message.
async fn deliver_to(
    subscriber: Arc<Subscriber>,
    message: Message,
    policy: RetryPolicy,
    shutdown: Shutdown,
) -> Result<(), BusError> {
    let _slot = subscriber
        .slots
        .acquire()
        .await
        .map_err(|_| BusError::Unavailable("closed".into()))?;
    let sub = &subscriber.subscription;
    let mut attempt = 1;
    loop {
        match deliver(sub.handler.as_ref(), &message.body).await {
            Ok(()) => return Ok(()),
            Err(e) if e.unavailable => {
                // The consumer's own infrastructure is down: wait it out, attempts untouched.
                metrics::counter!("kassa_consumer_unavailable_total", "consumer" => sub.consumer.clone()).increment(1);
                let wait = policy.delay_after(policy.max_attempts.saturating_sub(1).max(1));
                tracing::warn!(consumer = %sub.consumer, event_id = %message.id, retry_in_ms = wait.as_millis() as u64, error = %e, "handler cannot reach its infrastructure; will retry");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.wait() => return Err(BusError::Unavailable("shutting down".into())),
                }
            }
            Err(e) if attempt >= policy.max_attempts => {
                tracing::error!(consumer = %sub.consumer, event_id = %message.id, attempts = attempt, error = %e, "dead-lettering message");
                return store_dead_letter(&sub.db, &sub.consumer, &message, &e.message, attempt)
                    .await;
            }
            Err(e) => {
                let wait = policy.delay_after(attempt);
                tracing::warn!(consumer = %sub.consumer, event_id = %message.id, attempt, retry_in_ms = wait.as_millis() as u64, error = %e, "handler failed; will retry");
                metrics::counter!("kassa_consumer_retries_total", "consumer" => sub.consumer.clone()).increment(1);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    // Stopping: leave the message in the outbox for the next start.
                    _ = shutdown.wait() => return Err(BusError::Unavailable("shutting down".into())),
                }
                attempt += 1;
            }
        }
    }
}

async fn store_dead_letter(
    db: &Db,
    consumer: &str,
    message: &Message,
    error: &str,
    attempts: u32,
) -> Result<(), BusError> {
    sql("INSERT INTO dead_letters (id, consumer, topic, body, error, attempts, failed_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(Uuid::now_v7())
        .bind(consumer)
        .bind(message.topic.as_str())
        .bind(message.body.clone())
        .bind(error)
        .bind(attempts)
        .bind(Utc::now())
        .execute(db)
        .await
        .map_err(|e| BusError::DeadLetter(e.to_string()))?;
    metrics::counter!("kassa_dead_letters_total", "consumer" => consumer.to_owned()).increment(1);
    Ok(())
}

#[async_trait]
impl EventBus for MemoryBus {
    async fn publish(&self, message: &Message) -> Result<(), BusError> {
        if self.shutdown.is_triggered() {
            return Err(BusError::Unavailable("shutting down".into()));
        }
        let _tracked = self
            .deliveries
            .acquire()
            .await
            .map_err(|_| BusError::Unavailable("closed".into()))?;
        let targets: Vec<Arc<Subscriber>> = self
            .subscribers
            .read()
            .await
            .iter()
            .filter(|s| {
                s.subscription
                    .topics
                    .iter()
                    .any(|t| topic_matches(t, &message.topic))
            })
            .cloned()
            .collect();
        let mut outcomes = Vec::with_capacity(targets.len());
        for subscriber in targets {
            let (done, outcome) = oneshot::channel();
            subscriber
                .queue
                .send((message.clone(), done))
                .map_err(|_| BusError::Unavailable("subscriber stopped".into()))?;
            outcomes.push(outcome);
        }
        for outcome in futures_util::future::join_all(outcomes).await {
            outcome.map_err(|_| BusError::Unavailable("delivery abandoned".into()))??;
        }
        Ok(())
    }

    async fn subscribe(&self, subscription: Subscription) -> Result<(), BusError> {
        let (queue, incoming) = mpsc::unbounded_channel();
        let subscriber = Arc::new(Subscriber {
            subscription,
            slots: Arc::new(Semaphore::new(MAX_CONCURRENT_DELIVERIES)),
            queue,
        });
        tokio::spawn(dispatch(
            subscriber.clone(),
            incoming,
            self.policy,
            self.shutdown.clone(),
        ));
        self.subscribers.write().await.push(subscriber);
        Ok(())
    }

    async fn ready(&self) -> Result<(), BusError> {
        Ok(())
    }

    async fn drain(&self) {
        // Every delivery holds one permit; taking them all waits for the last to finish.
        let _all = self.deliveries.acquire_many(DRAIN_PERMITS).await;
    }
}

/// Dead letters kept in one consumer database.
pub async fn list_dead_letters(db: &Db) -> crate::db::DbResult<Vec<super::DeadLetter>> {
    let rows = sql(
        "SELECT id, consumer, topic, body, error, attempts FROM dead_letters ORDER BY failed_at",
    )
    .fetch_all(db)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let body: Vec<u8> = row.get("body")?;
        let attempts: i64 = row.get("attempts")?;
        out.push(super::DeadLetter {
            queue: row.get("consumer")?,
            id: Some(row.get("id")?),
            topic: row.get("topic")?,
            error: row.get("error")?,
            attempts: attempts as u32,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    Ok(out)
}

/// Moves every dead letter of one database back into its outbox, to be delivered again (to all
/// subscribers of its topic: those that handled it already skip it through their inbox).
pub async fn redrive_dead_letters(db: &Db) -> crate::db::DbResult<usize> {
    let mut tx = db.begin().await?;
    let rows = sql("SELECT id, topic, body FROM dead_letters")
        .fetch_all(&mut tx)
        .await?;
    for row in &rows {
        let body: Vec<u8> = row.get("body")?;
        let topic: String = row.get("topic")?;
        let id: Uuid = row.get("id")?;
        crate::outbox::add_raw(&mut tx, id, &topic, &body).await?;
        sql("DELETE FROM dead_letters WHERE id = $1")
            .bind(id)
            .execute(&mut tx)
            .await?;
    }
    tx.commit().await?;
    Ok(rows.len())
}
