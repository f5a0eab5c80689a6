//! The event bus port: publish a message and be told when the bus has taken responsibility for
//! it; subscribe a consumer whose failures are retried with backoff and, after the last attempt,
//! dead-lettered.
//!
//! Three adapters: [`memory::MemoryBus`] for the embedded mode, and `rabbit::RabbitBus` or (with
//! the `kafka` feature) `kafka::KafkaBus` for the distributed one.

pub mod kafka;
pub mod memory;
pub mod rabbit;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use kassa_contracts::Envelope;
use uuid::Uuid;

use crate::db::Db;

/// A message as the outbox stores it and the bus carries it: the body is an [`Envelope`] in JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: Uuid,
    pub topic: String,
    pub body: Vec<u8>,
}

/// Why the bus could not take or deliver a message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BusError {
    /// The broker could not be reached or dropped the connection.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The broker refused the message (a negative publisher confirm).
    #[error("broker refused the message")]
    Refused,
    /// A dead letter could not be stored.
    #[error("dead letter not stored: {0}")]
    DeadLetter(String),
}

/// A consumer's failure to handle one event.
///
/// Most failures count as an attempt: they are retried with backoff and, after the last attempt,
/// dead-lettered. A failure because the consumer's own infrastructure is unreachable (its
/// database is down) is `unavailable`: it is retried at the longest backoff for as long as it
/// lasts and never uses up attempts, so an outage delays events and dead-letters none.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError {
    pub message: String,
    pub unavailable: bool,
}

impl HandlerError {
    pub fn new(e: impl std::fmt::Display) -> Self {
        HandlerError {
            message: e.to_string(),
            unavailable: false,
        }
    }

    pub fn unavailable(e: impl std::fmt::Display) -> Self {
        HandlerError {
            message: e.to_string(),
            unavailable: true,
        }
    }
}

/// A write a consumer made through the API's rules (the resource kit's records): refused input
/// is the event's fault; an unavailable database is worth retrying.
impl From<crate::http::ApiError> for HandlerError {
    fn from(e: crate::http::ApiError) -> Self {
        if e.status == axum::http::StatusCode::SERVICE_UNAVAILABLE {
            HandlerError::unavailable(e.detail)
        } else {
            HandlerError::new(e.detail)
        }
    }
}

impl From<crate::db::DbError> for HandlerError {
    fn from(e: crate::db::DbError) -> Self {
        if e.is_unavailable() {
            HandlerError::unavailable(e)
        } else {
            HandlerError::new(e)
        }
    }
}

impl From<kassa_contracts::envelope::DecodeError> for HandlerError {
    fn from(e: kassa_contracts::envelope::DecodeError) -> Self {
        HandlerError::new(e)
    }
}

/// How a consumer takes its events: at most `max` at once, and for up to `linger` after the
/// first one has come, it waits for more. A step of a flow takes what has already arrived and
/// goes ([`Batching::PROMPT`]); a projection that sums every event (analytics) does far less
/// work per event in large batches, and may wait a moment to make them (and then, on a broker,
/// handles its batches one at a time, see [`Turns`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    pub max: usize,
    pub linger: Duration,
}

impl Batching {
    /// Whatever has already arrived, at most 64 events: none waits for another.
    pub const PROMPT: Batching = Batching {
        max: 64,
        linger: Duration::ZERO,
    };

    /// The next event of a batch of `len` begun at `started`, from `next`: one already there
    /// when nothing may wait, else one that comes before the linger ends; `None` once the batch
    /// is full or nothing more came in time.
    pub(crate) async fn more<T>(
        &self,
        started: tokio::time::Instant,
        len: usize,
        next: impl std::future::Future<Output = Option<T>>,
    ) -> Option<T> {
        if len >= self.max {
            return None;
        }
        if self.linger.is_zero() {
            futures_util::FutureExt::now_or_never(next).flatten()
        } else {
            tokio::time::timeout_at(started + self.linger, next)
                .await
                .ok()
                .flatten()
        }
    }
}

/// Whose turn it is to handle a batch, on a broker. A consumer that waits to fill its batches (a
/// projection summing every event) handles them one at a time, the next filling meanwhile: side
/// by side its batches would only contend for the same rows (and fail, and be handled again
/// event by event), and when one fails, its events are handled one after the other. A prompt
/// consumer (a step of a flow) handles its batches, and the events of a failed one, side by
/// side. The embedded bus takes no turns: its batches write to one SQLite file, whose lock
/// takes their writes one at a time anyway, while the work before the writes overlaps.
#[derive(Clone)]
pub(crate) struct Turns(Option<Arc<tokio::sync::Semaphore>>);

impl Turns {
    pub(crate) fn of(batching: &Batching) -> Self {
        Turns((!batching.linger.is_zero()).then(|| Arc::new(tokio::sync::Semaphore::new(1))))
    }

    /// Whether batches are handled one at a time.
    pub(crate) fn one_at_a_time(&self) -> bool {
        self.0.is_some()
    }

    /// Waits for the next batch's turn, which lasts as long as what is returned is kept.
    pub(crate) async fn take(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        match &self.0 {
            Some(turn) => turn.clone().acquire_owned().await.ok(),
            None => None,
        }
    }

    /// How many of a failed batch's `n` events are handled at once.
    pub(crate) fn width(&self, n: usize) -> usize {
        if self.one_at_a_time() { 1 } else { n.max(1) }
    }
}

/// What a consumer does with each event it subscribed to.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError>;

    /// How this consumer's events are grouped for [`Handler::handle_batch`].
    fn batching(&self) -> Batching {
        Batching::PROMPT
    }

    /// Handles events that arrived together. A handler that can record them all in one
    /// transaction overrides this; if it fails, nothing of the batch may remain, and the bus
    /// handles each event on its own (with its own retries).
    async fn handle_batch(&self, events: &[Envelope]) -> Result<(), HandlerError> {
        one_by_one(self, events).await
    }
}

/// Handles `events` one after the other (the default batch).
pub async fn one_by_one<H: Handler + ?Sized>(
    handler: &H,
    events: &[Envelope],
) -> Result<(), HandlerError> {
    for event in events {
        handler.handle(event).await?;
    }
    Ok(())
}

/// How often and how patiently a failed delivery is tried again.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; after the last the message is dead-lettered.
    pub max_attempts: u32,
    /// Wait before the second attempt; each later wait doubles.
    pub base_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based).
    pub fn delay_after(&self, attempt: u32) -> Duration {
        self.base_delay
            .saturating_mul(2_u32.saturating_pow(attempt.saturating_sub(1)))
    }
}

/// One consumer: its name (its queue), the event types it wants and its handler.
#[derive(Clone)]
pub struct Subscription {
    pub consumer: String,
    pub topics: Vec<String>,
    pub handler: Arc<dyn Handler>,
    /// The consumer's database, where the embedded bus keeps its dead letters.
    pub db: Db,
}

/// A consumer of the system and the event types it wants: brokers make its queues or topics
/// before anything is published.
#[derive(Debug, Clone)]
pub struct QueueSpec {
    pub consumer: String,
    pub topics: Vec<String>,
}

/// A dead-lettered message, as `kassa dlq list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadLetter {
    pub queue: String,
    pub id: Option<Uuid>,
    pub topic: String,
    pub error: String,
    pub attempts: u32,
    pub body: String,
}

#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Resolves once the bus is responsible for `message`: confirmed by the broker, or handled
    /// (or dead-lettered) by every in-process subscriber.
    async fn publish(&self, message: &Message) -> Result<(), BusError>;

    /// Starts delivering matching messages to the subscription until shutdown.
    async fn subscribe(&self, subscription: Subscription) -> Result<(), BusError>;

    /// Answers whether the bus can take messages now.
    async fn ready(&self) -> Result<(), BusError>;

    /// Waits until every delivery in progress has finished (after shutdown was asked for).
    async fn drain(&self);
}

/// Decodes a message and hands it to `handler`.
pub(crate) async fn deliver(handler: &dyn Handler, body: &[u8]) -> Result<(), HandlerError> {
    let envelope = Envelope::from_bytes(body)
        .map_err(|e| HandlerError::new(format!("malformed envelope: {e}")))?;
    let span = tracing::info_span!(
        "event",
        event_id = %envelope.id,
        event_type = %envelope.event_type,
        correlation_id = %envelope.correlationid,
    );
    tracing::Instrument::instrument(handler.handle(&envelope), span).await
}

/// True when `topic` matches the binding `pattern` (`*` is one word, `#` any number of words).
pub fn topic_matches(pattern: &str, topic: &str) -> bool {
    fn go(p: &[&str], t: &[&str]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(&"#"), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some(&"*"), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let t: Vec<&str> = topic.split('.').collect();
    go(&p, &t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_match_like_rabbitmq_bindings() {
        assert!(topic_matches("order.created", "order.created"));
        assert!(!topic_matches("order.created", "order.cancelled"));
        assert!(topic_matches("payment.*", "payment.approved"));
        assert!(!topic_matches("payment.*", "payment.approved.v2"));
        assert!(topic_matches("#", "payment.approved"));
        assert!(topic_matches("payment.#", "payment"));
    }

    #[test]
    fn backoff_doubles() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
        };
        assert_eq!(p.delay_after(1), Duration::from_millis(100));
        assert_eq!(p.delay_after(2), Duration::from_millis(200));
        assert_eq!(p.delay_after(4), Duration::from_millis(800));
    }
}
