//! The RabbitMQ adapter of the distributed mode.
//!
//! Topology for namespace `ns` and a consumer `c`:
//! - `ns.events`, a topic exchange every event is published to (persistent, publisher-confirmed);
//! - `ns.digests`, a fanout exchange the events published together go to as one message, when
//!   some consumer wants every event (see `digest.rs`);
//! - `ns.c`, the consumer's durable queue, bound to the event types it wants (or, for every
//!   event, to `ns.digests`), dead-lettering
//!   through `ns.dead` into `ns.c.dlq` should it ever reject a message outright;
//! - `ns.c.retry.<ms>`, one queue per backoff step whose messages expire back into `ns.c`.
//!
//! A failed delivery is republished to the next retry queue with its attempt count and error in
//! headers, and acknowledged only once the broker has confirmed that copy. After the last attempt
//! it is republished to `ns.c.dlq` instead, where `kassa dlq list` and `kassa dlq redrive` find it.
//!
//! - `mod.rs`: connections, publishing with confirms, the bus itself
//! - `topology.rs`: exchanges and queues, declared before the first publish
//! - `consume.rs`: deliveries, retries and dead letters
//! - `digest.rs`: the events published together, as one message for consumers of every event
//! - `dead_letters.rs`: listing and redriving dead letters

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use futures_util::StreamExt;
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
    message::Delivery,
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicGetOptions,
        BasicNackOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
        ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable, LongString, ShortString},
};
use tokio::sync::{Mutex, Semaphore};

mod consume;
mod dead_letters;
mod digest;
mod topology;

pub use dead_letters::{list_dead_letters, redrive_dead_letters};
pub use topology::Topology;

use consume::*;
use digest::Digests;
use topology::*;

use super::{
    BusError, DeadLetter, EventBus, HandlerError, Message, RetryPolicy, Subscription, Turns,
    deliver,
};
use crate::shutdown::Shutdown;
use kassa_contracts::Envelope;

const ATTEMPT_HEADER: &str = "x-kassa-attempt";
const ERROR_HEADER: &str = "x-kassa-error";
/// The event type of a message rerouted to a retry or dead-letter queue (its routing key there
/// is the queue's name).
const TOPIC_HEADER: &str = "x-kassa-topic";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long publishes fail fast after a failed connection attempt.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

async fn connect(url: &str, name: &str) -> Result<Connection, BusError> {
    let props =
        ConnectionProperties::default().with_connection_name(LongString::from(name.to_owned()));
    tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(url, props))
        .await
        .map_err(|_| unavailable("timed out connecting to RabbitMQ"))?
        .map_err(unavailable)
}

async fn confirm_channel(conn: &Connection) -> Result<Channel, BusError> {
    let ch = conn.create_channel().await.map_err(unavailable)?;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(unavailable)?;
    Ok(ch)
}

/// Publishes `body` to `exchange` and waits for the broker's confirm.
async fn publish_confirmed(
    ch: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    props: BasicProperties,
) -> Result<(), BusError> {
    let confirm = ch
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body,
            props,
        )
        .await
        .map_err(unavailable)?
        .await
        .map_err(unavailable)?;
    match confirm {
        Confirmation::Ack(_) | Confirmation::NotRequested => Ok(()),
        Confirmation::Nack(_) => Err(BusError::Refused),
    }
}

fn persistent(id: &str) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/cloudevents+json".into())
        .with_message_id(id.into())
}

struct Publisher {
    conn: Connection,
    channel: Channel,
}

pub use super::QueueSpec;

struct Inner {
    url: String,
    /// Every consumer of the system, declared before anything is published, so that no event
    /// is published while the queue meant to receive it does not exist yet.
    queues: Vec<QueueSpec>,
    topology: Topology,
    policy: RetryPolicy,
    prefetch: u16,
    shutdown: Shutdown,
    publisher: Mutex<Option<Publisher>>,
    /// When connecting last failed: for a moment after, publishes fail at once instead of each
    /// waiting for a connection attempt of its own.
    last_connect_failure: std::sync::Mutex<Option<std::time::Instant>>,
    consumers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Whether some consumer wants every event, so that events go in digests too: one listed in
    /// `queues`, or one subscribed to this bus.
    digests_wanted: std::sync::atomic::AtomicBool,
    /// The digests' publisher, started on the first publish that needs it.
    digests: std::sync::OnceLock<Digests>,
}

/// RabbitMQ behind the [`EventBus`] port; reconnects by itself after the broker comes back.
#[derive(Clone)]
pub struct RabbitBus {
    inner: Arc<Inner>,
}

impl RabbitBus {
    /// A bus on `url`; it connects on first use, so a broker that is down delays work and does
    /// not stop the service from starting. `queues` lists every consumer in the system (not only
    /// those in this process): their queues are declared whenever the publisher connects.
    pub fn new(
        url: &str,
        namespace: &str,
        queues: Vec<QueueSpec>,
        policy: RetryPolicy,
        prefetch: u16,
        shutdown: Shutdown,
    ) -> Self {
        let queues_want_digests = queues.iter().any(|q| digest::every_event(&q.topics));
        RabbitBus {
            inner: Arc::new(Inner {
                url: url.to_owned(),
                queues,
                topology: Topology::new(namespace),
                policy,
                prefetch,
                shutdown,
                publisher: Mutex::new(None),
                last_connect_failure: std::sync::Mutex::new(None),
                consumers: Mutex::new(Vec::new()),
                digests_wanted: queues_want_digests.into(),
                digests: std::sync::OnceLock::new(),
            }),
        }
    }

    async fn publish_channel(&self) -> Result<Channel, BusError> {
        let mut guard = self.inner.publisher.lock().await;
        if let Some(p) = guard.as_ref()
            && p.channel.status().connected()
            && p.conn.status().connected()
        {
            return Ok(p.channel.clone());
        }
        if let Ok(last) = self.inner.last_connect_failure.lock()
            && last.is_some_and(|t| t.elapsed() < RECONNECT_PAUSE)
        {
            return Err(unavailable("broker unreachable; retrying shortly"));
        }
        match self.connect_publisher().await {
            Ok(publisher) => {
                let channel = publisher.channel.clone();
                *guard = Some(publisher);
                Ok(channel)
            }
            Err(e) => {
                if let Ok(mut last) = self.inner.last_connect_failure.lock() {
                    *last = Some(std::time::Instant::now());
                }
                Err(e)
            }
        }
    }

    async fn connect_publisher(&self) -> Result<Publisher, BusError> {
        let conn = connect(&self.inner.url, "kassa-publisher").await?;
        let channel = confirm_channel(&conn).await?;
        declare_exchanges(&channel, &self.inner.topology).await?;
        for q in &self.inner.queues {
            declare_consumer(
                &channel,
                &self.inner.topology,
                &q.consumer,
                &q.topics,
                &self.inner.policy,
            )
            .await?;
        }
        Ok(Publisher { conn, channel })
    }

    async fn forget_publisher(&self) {
        *self.inner.publisher.lock().await = None;
    }

    /// Publishes on the publisher's channel and waits for the confirm; a connection found lost
    /// is forgotten, and the next publish makes a new one.
    async fn publish_to(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<(), BusError> {
        let ch = self.publish_channel().await?;
        let result = publish_confirmed(&ch, exchange, routing_key, body, props).await;
        if matches!(result, Err(BusError::Unavailable(_))) {
            self.forget_publisher().await;
        }
        result
    }
}

#[async_trait]
impl EventBus for RabbitBus {
    async fn publish(&self, message: &Message) -> Result<(), BusError> {
        let exchange = self.inner.topology.events_exchange();
        let event = self.publish_to(
            &exchange,
            &message.topic,
            &message.body,
            persistent(&message.id.to_string()),
        );
        if !self
            .inner
            .digests_wanted
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return event.await;
        }
        let digests = self
            .inner
            .digests
            .get_or_init(|| Digests::start(Arc::downgrade(&self.inner)));
        let (event, digest) = tokio::join!(event, digests.publish(message));
        event.and(digest)
    }

    async fn subscribe(&self, subscription: Subscription) -> Result<(), BusError> {
        if digest::every_event(&subscription.topics) {
            self.inner
                .digests_wanted
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let inner = self.inner.clone();
        let handle = tokio::spawn(consume_forever(inner, subscription));
        self.inner.consumers.lock().await.push(handle);
        Ok(())
    }

    async fn ready(&self) -> Result<(), BusError> {
        self.publish_channel().await.map(|_| ())
    }

    async fn drain(&self) {
        let handles: Vec<_> = std::mem::take(&mut *self.inner.consumers.lock().await);
        for h in handles {
            if let Err(e) = h.await {
                tracing::error!(error = %e, "a consumer task ended abnormally");
            }
        }
        if let Some(p) = self.inner.publisher.lock().await.take()
            && let Err(e) = p.conn.close(200, "shutdown".into()).await
        {
            // Every publish was confirmed or is still in an outbox: nothing is lost.
            tracing::debug!(error = %e, "closing the publisher connection");
        }
    }
}
