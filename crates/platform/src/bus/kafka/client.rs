//! The Kafka client: topics made on demand, the idempotent producer, the bus itself.

use std::{
    collections::{BTreeSet, HashSet},
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    error::KafkaError,
    message::{Header, Headers, OwnedHeaders},
    producer::{FutureProducer, FutureRecord, Producer},
    types::RDKafkaErrorCode,
};
use tokio::sync::Mutex;

use super::{DELIVERY_TIMEOUT, ID_HEADER, KafkaSettings, TYPE_HEADER, Topics, consume};
use crate::{
    bus::{BusError, EventBus, Message, QueueSpec, RetryPolicy, Subscription},
    shutdown::Shutdown,
};

/// A client of the brokers in `settings`.
pub(super) fn client(settings: &KafkaSettings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &settings.brokers)
        .set("socket.keepalive.enable", "true")
        .set("topic.metadata.refresh.interval.ms", "10000")
        .set("log_level", "4");
    c
}

pub(super) fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

/// A broker's refusal of the record itself (too large, malformed) rather than of the moment.
fn refused(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidMessage
        )
    )
}

/// The value of header `key`, as text.
pub(super) fn header<'a, H: Headers>(headers: Option<&'a H>, key: &str) -> Option<&'a str> {
    headers?
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

pub(super) fn with_header(headers: OwnedHeaders, key: &str, value: &str) -> OwnedHeaders {
    headers.insert(Header {
        key,
        value: Some(value),
    })
}

/// Creates topics and remembers which exist, so each is created once per process.
pub(super) struct Creator {
    admin: AdminClient<DefaultClientContext>,
    partitions: i32,
    replication: i32,
    known: Mutex<HashSet<String>>,
}

impl Creator {
    pub(super) fn new(settings: &KafkaSettings) -> Result<Self, BusError> {
        Ok(Creator {
            admin: client(settings).create().map_err(unavailable)?,
            partitions: settings.partitions.max(1),
            replication: settings.replication,
            known: Mutex::new(HashSet::new()),
        })
    }

    /// Makes sure every topic of `names` exists.
    pub(super) async fn ensure(&self, names: &[String]) -> Result<(), BusError> {
        let missing: Vec<String> = {
            let known = self.known.lock().await;
            names
                .iter()
                // A regular expression names topics, it is not one.
                .filter(|n| !n.starts_with('^') && !known.contains(*n))
                .cloned()
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let topics: Vec<NewTopic> = missing
            .iter()
            .map(|name| {
                NewTopic::new(
                    name,
                    self.partitions,
                    TopicReplication::Fixed(self.replication),
                )
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = tokio::time::timeout(
            Duration::from_secs(15),
            self.admin.create_topics(&topics, &options),
        )
        .await
        .map_err(|_| unavailable("timed out creating Kafka topics"))?
        .map_err(unavailable)?;
        let mut known = self.known.lock().await;
        for result in results {
            match result {
                Ok(name) | Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    known.insert(name);
                }
                Err((name, code)) => {
                    return Err(unavailable(format!("creating topic {name}: {code}")));
                }
            }
        }
        Ok(())
    }
}

pub(super) struct Inner {
    pub(super) settings: KafkaSettings,
    pub(super) topics: Topics,
    /// Every consumer of the system: their topics are made before anything is published.
    pub(super) consumers: Vec<QueueSpec>,
    pub(super) policy: RetryPolicy,
    /// Records a partition worker holds before its partition is paused.
    pub(super) prefetch: usize,
    pub(super) shutdown: Shutdown,
    pub(super) producer: FutureProducer,
    pub(super) creator: Creator,
    pub(super) workers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// Kafka behind the [`EventBus`] port; librdkafka reconnects by itself after a broker comes
/// back.
#[derive(Clone)]
pub struct KafkaBus {
    inner: Arc<Inner>,
}

/// The producer every publish and every copied record goes through: idempotent, acknowledged
/// by all in-sync replicas.
pub(super) fn producer(settings: &KafkaSettings) -> Result<FutureProducer, BusError> {
    client(settings)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("compression.type", "lz4")
        .set(
            "message.timeout.ms",
            DELIVERY_TIMEOUT.as_millis().to_string(),
        )
        .create()
        .map_err(unavailable)
}

impl KafkaBus {
    /// A bus on `settings.brokers`; it connects in the background, so a broker that is down
    /// delays work and does not stop the service from starting. `consumers` lists every
    /// consumer in the system: their topics are made whenever the bus is first ready.
    pub fn new(
        settings: KafkaSettings,
        namespace: &str,
        consumers: Vec<QueueSpec>,
        policy: RetryPolicy,
        prefetch: u16,
        shutdown: Shutdown,
    ) -> Result<Self, BusError> {
        Ok(KafkaBus {
            inner: Arc::new(Inner {
                topics: Topics::new(namespace, &settings),
                producer: producer(&settings)?,
                creator: Creator::new(&settings)?,
                settings,
                consumers,
                policy,
                prefetch: usize::from(prefetch.max(1)),
                shutdown,
                workers: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The names of this bus's topics.
    pub fn topics(&self) -> &Topics {
        &self.inner.topics
    }

    /// Every topic of the system's consumers: what they read and where their retries wait.
    fn consumer_topics(&self) -> Vec<String> {
        let inner = &self.inner;
        let mut all = BTreeSet::new();
        for c in &inner.consumers {
            all.extend(inner.topics.for_events(c.topics.iter().map(String::as_str)));
            all.extend(
                inner
                    .topics
                    .retries(&c.consumer, &inner.policy)
                    .into_iter()
                    .map(|(t, _)| t),
            );
            all.insert(inner.topics.redrive(&c.consumer));
        }
        all.into_iter().collect()
    }
}

impl Inner {
    /// Sends one record and waits for the brokers' acknowledgement.
    pub(super) async fn send(
        &self,
        topic: &str,
        key: Option<&str>,
        body: &[u8],
        headers: OwnedHeaders,
    ) -> Result<(), BusError> {
        self.creator.ensure(&[topic.to_owned()]).await?;
        let mut record = FutureRecord::to(topic).payload(body).headers(headers);
        if let Some(key) = key.filter(|k| !k.is_empty()) {
            record = record.key(key);
        }
        match self.producer.send(record, Duration::from_secs(5)).await {
            Ok(_) => Ok(()),
            Err((e, _)) if refused(&e) => {
                tracing::error!(topic, error = %e, "the broker refused a record");
                Err(BusError::Refused)
            }
            Err((e, _)) => Err(unavailable(e)),
        }
    }
}

/// The aggregate an event is about: its CloudEvents `subject`, read without the payload.
pub(super) fn subject_of(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Subject {
        subject: String,
    }
    serde_json::from_slice::<Subject>(body)
        .ok()
        .map(|s| s.subject)
}

#[async_trait]
impl EventBus for KafkaBus {
    async fn publish(&self, message: &Message) -> Result<(), BusError> {
        let topic = self.inner.topics.for_event(&message.topic);
        let key = subject_of(&message.body);
        let headers = with_header(
            with_header(
                OwnedHeaders::new_with_capacity(3),
                TYPE_HEADER,
                &message.topic,
            ),
            ID_HEADER,
            &message.id.to_string(),
        );
        let headers = with_header(headers, "content-type", "application/cloudevents+json");
        self.inner
            .send(&topic, key.as_deref(), &message.body, headers)
            .await
    }

    async fn subscribe(&self, subscription: Subscription) -> Result<(), BusError> {
        let handle = tokio::spawn(consume::consume_forever(self.inner.clone(), subscription));
        self.inner.workers.lock().await.push(handle);
        Ok(())
    }

    async fn ready(&self) -> Result<(), BusError> {
        let producer = self.inner.producer.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Duration::from_secs(3))
                .map(drop)
        })
        .await
        .map_err(unavailable)?
        .map_err(unavailable)?;
        self.inner.creator.ensure(&self.consumer_topics()).await
    }

    async fn drain(&self) {
        let handles: Vec<_> = std::mem::take(&mut *self.inner.workers.lock().await);
        for h in handles {
            if let Err(e) = h.await {
                tracing::error!(error = %e, "a consumer task ended abnormally");
            }
        }
        let producer = self.inner.producer.clone();
        // Every publish was acknowledged or is still in an outbox: flushing only hurries copies
        // of failed records on their way.
        let _ = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(5))).await;
    }
}

/// Deletes every topic of `namespace` (test clean-up); answers how many went.
pub async fn delete_namespace_topics(
    settings: &KafkaSettings,
    namespace: &str,
) -> Result<usize, BusError> {
    let topics = Topics::new(namespace, settings);
    let admin: AdminClient<DefaultClientContext> =
        client(settings).create().map_err(unavailable)?;
    let metadata = {
        let client = client(settings);
        tokio::task::spawn_blocking(move || {
            let consumer: rdkafka::consumer::BaseConsumer = client.create().map_err(unavailable)?;
            rdkafka::consumer::Consumer::fetch_metadata(&consumer, None, Duration::from_secs(5))
                .map_err(unavailable)
                .map(|m| {
                    m.topics()
                        .iter()
                        .map(|t| t.name().to_owned())
                        .collect::<Vec<_>>()
                })
        })
        .await
        .map_err(unavailable)??
    };
    let ours: Vec<&str> = metadata
        .iter()
        .filter(|t| topics.owns(t))
        .map(String::as_str)
        .collect();
    if ours.is_empty() {
        return Ok(0);
    }
    admin
        .delete_topics(&ours, &AdminOptions::new())
        .await
        .map_err(unavailable)?;
    Ok(ours.len())
}
