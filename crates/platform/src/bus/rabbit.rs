//! The RabbitMQ adapter of the distributed mode.
//!
//! Topology for namespace `ns` and a consumer `c`:
//! - `ns.events`, a topic exchange every event is published to (persistent, publisher-confirmed);
//! - `ns.c`, the consumer's durable queue, bound to the event types it wants, dead-lettering
//!   through `ns.dead` into `ns.c.dlq` should it ever reject a message outright;
//! - `ns.c.retry.<ms>`, one queue per backoff step whose messages expire back into `ns.c`.
//!
//! A failed delivery is republished to the next retry queue with its attempt count and error in
//! headers, and acknowledged only once the broker has confirmed that copy. After the last attempt
//! it is republished to `ns.c.dlq` instead, where `kassa dlq list` and `kassa dlq redrive` find it.

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

use super::{
    BusError, DeadLetter, EventBus, HandlerError, Message, RetryPolicy, Subscription, deliver,
};
use crate::shutdown::Shutdown;
use kassa_contracts::Envelope;

const ATTEMPT_HEADER: &str = "x-kassa-attempt";
const ERROR_HEADER: &str = "x-kassa-error";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long publishes fail fast after a failed connection attempt.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

/// Names of the exchanges and queues of one namespace.
#[derive(Debug, Clone)]
pub struct Topology {
    namespace: String,
}

impl Topology {
    pub fn new(namespace: &str) -> Self {
        Topology {
            namespace: namespace.to_owned(),
        }
    }
    pub fn events_exchange(&self) -> String {
        format!("{}.events", self.namespace)
    }
    fn dead_exchange(&self) -> String {
        format!("{}.dead", self.namespace)
    }
    pub fn queue(&self, consumer: &str) -> String {
        format!("{}.{consumer}", self.namespace)
    }
    pub fn dead_letter_queue(&self, consumer: &str) -> String {
        format!("{}.{consumer}.dlq", self.namespace)
    }
    fn retry_queue(&self, consumer: &str, delay: Duration) -> String {
        format!(
            "{}.{consumer}.retry.{}ms",
            self.namespace,
            delay.as_millis()
        )
    }
}

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

async fn declare_exchanges(ch: &Channel, topology: &Topology) -> Result<(), BusError> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare(
        topology.events_exchange().into(),
        ExchangeKind::Topic,
        durable,
        FieldTable::default(),
    )
    .await
    .map_err(unavailable)?;
    ch.exchange_declare(
        topology.dead_exchange().into(),
        ExchangeKind::Direct,
        durable,
        FieldTable::default(),
    )
    .await
    .map_err(unavailable)?;
    Ok(())
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.to_owned()))
}

async fn declare_queue(ch: &Channel, name: &str, args: FieldTable) -> Result<u32, BusError> {
    let options = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let q = ch
        .queue_declare(name.into(), options, args)
        .await
        .map_err(unavailable)?;
    Ok(q.message_count())
}

/// Declares a consumer's queue, its retry queues and its dead-letter queue.
async fn declare_consumer(
    ch: &Channel,
    topology: &Topology,
    sub_consumer: &str,
    topics: &[String],
    policy: &RetryPolicy,
) -> Result<(), BusError> {
    declare_exchanges(ch, topology).await?;
    let queue = topology.queue(sub_consumer);
    let dlq = topology.dead_letter_queue(sub_consumer);
    declare_queue(ch, &dlq, FieldTable::default()).await?;
    ch.queue_bind(
        dlq.as_str().into(),
        topology.dead_exchange().into(),
        queue.as_str().into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(unavailable)?;
    let main_args = table(&[
        ("x-dead-letter-exchange", text(&topology.dead_exchange())),
        ("x-dead-letter-routing-key", text(&queue)),
    ]);
    declare_queue(ch, &queue, main_args).await?;
    for topic in topics {
        ch.queue_bind(
            queue.as_str().into(),
            topology.events_exchange().into(),
            topic.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)?;
    }
    for attempt in 1..policy.max_attempts {
        let delay = policy.delay_after(attempt);
        let args = table(&[
            (
                "x-message-ttl",
                AMQPValue::LongLongInt(delay.as_millis() as i64),
            ),
            ("x-dead-letter-exchange", text("")),
            ("x-dead-letter-routing-key", text(&queue)),
        ]);
        declare_queue(ch, &topology.retry_queue(sub_consumer, delay), args).await?;
    }
    Ok(())
}

fn attempt_of(delivery: &Delivery) -> u32 {
    delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(ATTEMPT_HEADER).cloned())
        .and_then(|v| match v {
            AMQPValue::LongLongInt(n) => Some(n as u32),
            AMQPValue::LongInt(n) => Some(n as u32),
            AMQPValue::LongUInt(n) => Some(n),
            _ => None,
        })
        .unwrap_or(1)
}

fn error_of(properties: &BasicProperties) -> String {
    properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(ERROR_HEADER).cloned())
        .and_then(|v| match v {
            AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
            _ => None,
        })
        .unwrap_or_default()
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

/// A consumer's queue and the event types bound to it.
#[derive(Debug, Clone)]
pub struct QueueSpec {
    pub consumer: String,
    pub topics: Vec<String>,
}

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
}

#[async_trait]
impl EventBus for RabbitBus {
    async fn publish(&self, message: &Message) -> Result<(), BusError> {
        let ch = self.publish_channel().await?;
        let props = persistent(&message.id.to_string());
        let result = publish_confirmed(
            &ch,
            &self.inner.topology.events_exchange(),
            &message.topic,
            &message.body,
            props,
        )
        .await;
        if matches!(result, Err(BusError::Unavailable(_))) {
            self.forget_publisher().await;
        }
        result
    }

    async fn subscribe(&self, subscription: Subscription) -> Result<(), BusError> {
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

async fn consume_forever(inner: Arc<Inner>, sub: Subscription) {
    let mut backoff = Duration::from_millis(250);
    while !inner.shutdown.is_triggered() {
        match consume_once(&inner, &sub).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(consumer = %sub.consumer, error = %e, retry_in_ms = backoff.as_millis() as u64, "consumer lost the broker; reconnecting");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = inner.shutdown.wait() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Consumes until shutdown (Ok) or until the connection fails (Err).
async fn consume_once(inner: &Arc<Inner>, sub: &Subscription) -> Result<(), BusError> {
    let conn = connect(&inner.url, &format!("kassa-{}", sub.consumer)).await?;
    let ch = conn.create_channel().await.map_err(unavailable)?;
    declare_consumer(
        &ch,
        &inner.topology,
        &sub.consumer,
        &sub.topics,
        &inner.policy,
    )
    .await?;
    ch.basic_qos(inner.prefetch, BasicQosOptions::default())
        .await
        .map_err(unavailable)?;
    let out = confirm_channel(&conn).await?;
    let queue = inner.topology.queue(&sub.consumer);
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            format!("{}-{}", sub.consumer, uuid::Uuid::new_v4()).into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)?;
    tracing::info!(consumer = %sub.consumer, queue = %queue, "consuming");
    let in_flight = Arc::new(Semaphore::new(inner.prefetch as usize));
    let result = loop {
        tokio::select! {
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    // Whatever else has already arrived goes with it, to be handled as a batch.
                    let mut batch = vec![delivery];
                    let mut broken = None;
                    while batch.len() < MAX_BATCH {
                        match futures_util::FutureExt::now_or_never(consumer.next()) {
                            Some(Some(Ok(more))) => batch.push(more),
                            Some(Some(Err(e))) => {
                                broken = Some(unavailable(e));
                                break;
                            }
                            _ => break,
                        }
                    }
                    let permits = in_flight.clone().acquire_many_owned(batch.len() as u32).await.map_err(unavailable)?;
                    let (inner, sub, out) = (inner.clone(), sub.clone(), out.clone());
                    tokio::spawn(async move {
                        handle_deliveries(&inner, &sub, &out, batch).await;
                        drop(permits);
                    });
                    if let Some(e) = broken {
                        break Err(e);
                    }
                }
                Some(Err(e)) => break Err(unavailable(e)),
                None => break Err(unavailable("consumer cancelled by the broker")),
            },
            _ = inner.shutdown.wait() => {
                let _ = ch.basic_cancel(consumer.tag(), BasicCancelOptions::default()).await;
                break Ok(());
            }
        }
    };
    // Let deliveries in progress finish and be acknowledged before the connection goes.
    if tokio::time::timeout(
        Duration::from_secs(10),
        in_flight.acquire_many(inner.prefetch as u32),
    )
    .await
    .is_err()
    {
        // Unacknowledged deliveries go back to the queue and are handled again (the inbox
        // makes that harmless).
        tracing::warn!("deliveries still being handled at shutdown; the broker redelivers them");
    }
    if let Err(e) = conn.close(200, "bye".into()).await {
        tracing::debug!(error = %e, "closing a consumer connection");
    }
    result
}

/// Deliveries handed to a handler at once, at most.
const MAX_BATCH: usize = 64;

/// Handles deliveries that arrived together: as one batch when they all parse and the handler
/// takes them, else one by one, each with its own retries.
async fn handle_deliveries(inner: &Inner, sub: &Subscription, out: &Channel, batch: Vec<Delivery>) {
    if batch.len() > 1 {
        let envelopes: Option<Vec<Envelope>> = batch
            .iter()
            .map(|d| Envelope::from_bytes(&d.data).ok())
            .collect();
        if let Some(envelopes) = envelopes {
            match sub.handler.handle_batch(&envelopes).await {
                Ok(()) => {
                    for d in &batch {
                        if let Err(e) = d.acker.ack(BasicAckOptions::default()).await {
                            tracing::warn!(consumer = %sub.consumer, error = %e, "acknowledgement lost; the broker will redeliver");
                        }
                    }
                    return;
                }
                Err(e) => {
                    tracing::debug!(consumer = %sub.consumer, error = %e, "batch failed; handling its events one by one")
                }
            }
        }
    }
    futures_util::future::join_all(
        batch
            .into_iter()
            .map(|d| handle_delivery(inner, sub, out, d)),
    )
    .await;
}

async fn handle_delivery(inner: &Inner, sub: &Subscription, out: &Channel, delivery: Delivery) {
    let outcome = deliver(sub.handler.as_ref(), &delivery.data).await;
    let acked = match outcome {
        Ok(()) => delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .map(|_| ()),
        Err(e) => {
            let attempt = attempt_of(&delivery);
            match retry_or_dead_letter(inner, sub, out, &delivery, attempt, &e).await {
                Ok(()) => delivery
                    .acker
                    .ack(BasicAckOptions::default())
                    .await
                    .map(|_| ()),
                Err(publish_error) => {
                    // The copy was not confirmed: give the message back rather than lose it.
                    tracing::warn!(consumer = %sub.consumer, error = %publish_error, "could not reroute failed message; requeueing");
                    tokio::time::sleep(inner.policy.base_delay).await;
                    delivery
                        .acker
                        .nack(BasicNackOptions {
                            requeue: true,
                            ..Default::default()
                        })
                        .await
                        .map(|_| ())
                }
            }
        }
    };
    if let Err(e) = acked {
        tracing::warn!(consumer = %sub.consumer, error = %e, "acknowledgement lost; the broker will redeliver");
    }
}

async fn retry_or_dead_letter(
    inner: &Inner,
    sub: &Subscription,
    out: &Channel,
    delivery: &Delivery,
    attempt: u32,
    error: &HandlerError,
) -> Result<(), BusError> {
    let topology = &inner.topology;
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    headers.insert(ERROR_HEADER.into(), text(&error.message));
    // The first delivery's routing key is the event type; retries arrive from a retry queue.
    if !headers.inner().contains_key("x-kassa-topic") {
        headers.insert("x-kassa-topic".into(), text(delivery.routing_key.as_str()));
    }
    let message_id = delivery
        .properties
        .message_id()
        .clone()
        .map(|s| s.to_string())
        .unwrap_or_default();
    if error.unavailable {
        // The consumer's own infrastructure is down: wait at the longest backoff, attempts
        // untouched, for as long as the outage lasts.
        if inner.policy.max_attempts < 2 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            return Err(unavailable("no retry queue to wait in"));
        }
        let delay = inner.policy.delay_after(inner.policy.max_attempts - 1);
        tracing::warn!(consumer = %sub.consumer, retry_in_ms = delay.as_millis() as u64, error = %error, "handler cannot reach its infrastructure; will retry");
        headers.insert(
            ATTEMPT_HEADER.into(),
            AMQPValue::LongLongInt(attempt as i64),
        );
        let props = persistent(&message_id).with_headers(headers);
        return publish_confirmed(
            out,
            "",
            &topology.retry_queue(&sub.consumer, delay),
            &delivery.data,
            props,
        )
        .await;
    }
    if attempt < inner.policy.max_attempts {
        let delay = inner.policy.delay_after(attempt);
        tracing::warn!(consumer = %sub.consumer, attempt, retry_in_ms = delay.as_millis() as u64, error = %error, "handler failed; will retry");
        metrics::counter!("kassa_consumer_retries_total", "consumer" => sub.consumer.clone())
            .increment(1);
        headers.insert(
            ATTEMPT_HEADER.into(),
            AMQPValue::LongLongInt(attempt as i64 + 1),
        );
        let props = persistent(&message_id).with_headers(headers);
        publish_confirmed(
            out,
            "",
            &topology.retry_queue(&sub.consumer, delay),
            &delivery.data,
            props,
        )
        .await
    } else {
        tracing::error!(consumer = %sub.consumer, attempts = attempt, error = %error, "dead-lettering message");
        metrics::counter!("kassa_dead_letters_total", "consumer" => sub.consumer.clone())
            .increment(1);
        headers.insert(
            ATTEMPT_HEADER.into(),
            AMQPValue::LongLongInt(attempt as i64),
        );
        let props = persistent(&message_id).with_headers(headers);
        publish_confirmed(
            out,
            "",
            &topology.dead_letter_queue(&sub.consumer),
            &delivery.data,
            props,
        )
        .await
    }
}

/// Reads the dead-letter queue of each consumer without taking anything off it.
pub async fn list_dead_letters(
    url: &str,
    namespace: &str,
    consumers: &[&str],
) -> Result<Vec<DeadLetter>, BusError> {
    let topology = Topology::new(namespace);
    let conn = connect(url, "kassa-dlq").await?;
    let mut out = Vec::new();
    for consumer in consumers {
        let ch = conn.create_channel().await.map_err(unavailable)?;
        let dlq = topology.dead_letter_queue(consumer);
        declare_queue(&ch, &dlq, FieldTable::default()).await?;
        while let Some(msg) = ch
            .basic_get(dlq.as_str().into(), BasicGetOptions::default())
            .await
            .map_err(unavailable)?
        {
            let d = msg.delivery;
            let topic = d
                .properties
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get("x-kassa-topic").cloned())
                .and_then(|v| match v {
                    AMQPValue::LongString(s) => {
                        Some(String::from_utf8_lossy(s.as_bytes()).into_owned())
                    }
                    _ => None,
                })
                .unwrap_or_else(|| d.routing_key.to_string());
            out.push(DeadLetter {
                queue: dlq.clone(),
                id: d
                    .properties
                    .message_id()
                    .as_ref()
                    .and_then(|s| s.as_str().parse().ok()),
                topic,
                error: error_of(&d.properties),
                attempts: attempt_of(&d),
                body: String::from_utf8_lossy(&d.data).into_owned(),
            });
        }
        // Closing the channel hands every unacknowledged message back to the queue, in order.
        let _ = ch.close(200, "listed".into()).await;
    }
    let _ = conn.close(200, "bye".into()).await;
    Ok(out)
}

/// Moves every message of a consumer's dead-letter queue back to its queue for a fresh set of
/// attempts; returns how many moved.
pub async fn redrive_dead_letters(
    url: &str,
    namespace: &str,
    consumer: &str,
) -> Result<usize, BusError> {
    let topology = Topology::new(namespace);
    let conn = connect(url, "kassa-dlq").await?;
    let ch = confirm_channel(&conn).await?;
    let dlq = topology.dead_letter_queue(consumer);
    declare_queue(&ch, &dlq, FieldTable::default()).await?;
    let mut moved = 0;
    while let Some(msg) = ch
        .basic_get(dlq.as_str().into(), BasicGetOptions::default())
        .await
        .map_err(unavailable)?
    {
        let d = msg.delivery;
        let mut headers = d.properties.headers().clone().unwrap_or_default();
        headers.insert(ATTEMPT_HEADER.into(), AMQPValue::LongLongInt(1));
        let props = d.properties.clone().with_headers(headers);
        publish_confirmed(&ch, "", &topology.queue(consumer), &d.data, props).await?;
        d.acker
            .ack(BasicAckOptions::default())
            .await
            .map_err(unavailable)?;
        moved += 1;
    }
    let _ = conn.close(200, "bye".into()).await;
    Ok(moved)
}
