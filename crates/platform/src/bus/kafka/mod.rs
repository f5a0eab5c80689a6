//! The Kafka adapter of the distributed mode (cargo feature `kafka`).
//!
//! Topics for namespace `ns` (no prefix under the default namespace `kassa`, so a default
//! installation speaks seed 004's topic names):
//! - one topic per kind of aggregate, named after the first word of its event types: `order.*`
//!   go to `order.create` and `payment.*` to `payment.event` (seed 004's names, configurable),
//!   any other `x.*` to `x.event`. Records are keyed by the event's subject, the aggregate's id,
//!   so one aggregate's events stay in one partition, in order;
//! - `ns.c.retry.<ms>` for consumer `c`, one per backoff step: a failed record is copied there
//!   with its attempt count, error and due time in headers, and handled again once due, so a
//!   failure never holds up the partition it came from;
//! - `<topic>-dlq` (seed 004's `payment.event-dlq`): a record's last failure, with the consumer
//!   that gave up on it in a header. `kassa dlq list|redrive` read it with a cursor per consumer;
//!   a redrive sends the records back through `ns.c.redrive`.
//!
//! Each consumer is a consumer group (`ns.c`): replicas share its partitions and take over a dead
//! replica's when its session ends. An offset is stored only once its record was handled or
//! copied on (and committed every second), so a crash replays records, which the inbox makes
//! harmless. The producer is idempotent and waits for every in-sync replica: the outbox relay
//! deletes a row only after that acknowledgement.
//!
//! - `mod.rs`: settings, topic names, producing, the bus itself
//! - `consume.rs`: consumer groups, per-partition workers, retries and dead letters
//! - `dead_letters.rs`: listing and redriving dead letters

use std::{collections::BTreeMap, collections::BTreeSet, time::Duration};

#[cfg(feature = "kafka")]
mod client;
#[cfg(feature = "kafka")]
mod consume;
#[cfg(feature = "kafka")]
mod dead_letters;

#[cfg(feature = "kafka")]
use client::*;
#[cfg(feature = "kafka")]
pub use client::{KafkaBus, delete_namespace_topics};
#[cfg(feature = "kafka")]
pub use dead_letters::{list_dead_letters, redrive_dead_letters};

use super::RetryPolicy;

/// Header of a copied record: which attempt comes next.
#[cfg(feature = "kafka")]
const ATTEMPT_HEADER: &str = "x-kassa-attempt";
/// Header of a copied record: why the last attempt failed.
#[cfg(feature = "kafka")]
const ERROR_HEADER: &str = "x-kassa-error";
/// Header of a copied record: when it may be handled (milliseconds since the epoch).
#[cfg(feature = "kafka")]
const DUE_HEADER: &str = "x-kassa-due";
/// Header of a copied record: the consumer it is for.
#[cfg(feature = "kafka")]
const CONSUMER_HEADER: &str = "x-kassa-consumer";
/// Header of a copied record: the topic it was first published to.
#[cfg(feature = "kafka")]
const SOURCE_HEADER: &str = "x-kassa-source";
/// Header of every record: its event type, so consumers skip what they do not want unparsed.
#[cfg(feature = "kafka")]
const TYPE_HEADER: &str = "ce_type";
/// Header of every record: its event id.
#[cfg(feature = "kafka")]
const ID_HEADER: &str = "ce_id";

/// How a record that has not reached the broker in this long is reported: the relay keeps the
/// outbox row and tries again.
#[cfg(feature = "kafka")]
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the brokers are and how topics are made.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `host:port,host:port`.
    pub brokers: String,
    /// Partitions of each topic kassa creates.
    pub partitions: i32,
    /// Replicas of each topic kassa creates (-1: the broker's default).
    pub replication: i32,
    /// Topic names by the first word of event types, where they differ from `<word>.event`.
    pub topics: BTreeMap<String, String>,
}

impl KafkaSettings {
    /// Seed 004's topic names for the checkout: `order.create` and `payment.event`.
    pub fn new(brokers: &str) -> Self {
        KafkaSettings {
            brokers: brokers.to_owned(),
            partitions: 6,
            replication: -1,
            topics: BTreeMap::from([
                ("order".to_owned(), "order.create".to_owned()),
                ("payment".to_owned(), "payment.event".to_owned()),
            ]),
        }
    }
}

/// The topic names of one namespace.
#[derive(Debug, Clone)]
pub struct Topics {
    namespace: String,
    /// Prefix of the topics events are published to: none under the default namespace.
    prefix: String,
    names: BTreeMap<String, String>,
}

impl Topics {
    pub fn new(namespace: &str, settings: &KafkaSettings) -> Self {
        Topics {
            namespace: namespace.to_owned(),
            prefix: if namespace == "kassa" {
                String::new()
            } else {
                format!("{namespace}.")
            },
            names: settings.topics.clone(),
        }
    }

    /// The topic events of `event_type` (or a binding pattern like `payment.*`) go to.
    pub fn for_event(&self, event_type: &str) -> String {
        let word = event_type.split('.').next().unwrap_or(event_type);
        match self.names.get(word) {
            Some(name) => format!("{}{name}", self.prefix),
            None => format!("{}{word}.event", self.prefix),
        }
    }

    /// The topics a consumer of these event types (or patterns) reads. A pattern whose first
    /// word is a wildcard (`#`) reads every event topic of the namespace, through a regular
    /// expression (a name starting with `^`, as librdkafka takes it).
    pub fn for_events<'a>(&self, event_types: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let set: BTreeSet<String> = event_types
            .into_iter()
            .map(|t| match t.split('.').next() {
                Some("#" | "*") => self.every_event_topic(),
                _ => self.for_event(t),
            })
            .collect();
        set.into_iter().collect()
    }

    /// A regular expression matching every event topic of the namespace, and no retry or
    /// dead-letter topic.
    fn every_event_topic(&self) -> String {
        let escape = |s: &str| s.replace('.', "\\.");
        let mut names = vec!["[^.]+\\.event".to_owned()];
        names.extend(self.names.values().map(|n| escape(n)));
        format!("^{}({})$", escape(&self.prefix), names.join("|"))
    }

    /// The topic a consumer's failed records wait in for `delay`.
    pub fn retry(&self, consumer: &str, delay: Duration) -> String {
        format!(
            "{}.{consumer}.retry.{}ms",
            self.namespace,
            delay.as_millis()
        )
    }

    /// Every retry topic of a consumer under `policy`, shortest wait first.
    pub fn retries(&self, consumer: &str, policy: &RetryPolicy) -> Vec<(String, Duration)> {
        let mut delays: Vec<Duration> = (1..policy.max_attempts.max(2))
            .map(|a| policy.delay_after(a))
            .collect();
        delays.dedup();
        delays
            .into_iter()
            .map(|d| (self.retry(consumer, d), d))
            .collect()
    }

    /// The topic a consumer's redriven dead letters come back through, handled at once with a
    /// fresh set of attempts (whatever retry policy the redriving process has).
    pub fn redrive(&self, consumer: &str) -> String {
        format!("{}.{consumer}.redrive", self.namespace)
    }

    /// The dead-letter topic of records first published to `topic`.
    pub fn dead_letters(&self, topic: &str) -> String {
        format!("{topic}-dlq")
    }

    /// A consumer's group.
    pub fn group(&self, consumer: &str) -> String {
        format!("{}.{consumer}", self.namespace)
    }

    /// The group whose offsets mark how far a consumer's dead letters were redriven.
    pub fn redrive_group(&self, consumer: &str) -> String {
        format!("{}.{consumer}.dlq", self.namespace)
    }

    /// Whether `topic` belongs to this namespace (for cleaning up after a test run).
    pub fn owns(&self, topic: &str) -> bool {
        topic.starts_with(&format!("{}.", self.namespace))
            || (!self.prefix.is_empty() && topic.starts_with(&self.prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_follow_seed_004_under_the_default_namespace() {
        let s = KafkaSettings::new("127.0.0.1:9092");
        let t = Topics::new("kassa", &s);
        assert_eq!(t.for_event("order.created"), "order.create");
        assert_eq!(t.for_event("order.cancelled"), "order.create");
        assert_eq!(t.for_event("payment.approved"), "payment.event");
        assert_eq!(t.for_event("payment.*"), "payment.event");
        assert_eq!(t.for_event("member.created"), "member.event");
        assert_eq!(t.dead_letters("payment.event"), "payment.event-dlq");
        assert_eq!(
            t.retry("orders", Duration::from_millis(200)),
            "kassa.orders.retry.200ms"
        );
        let other = Topics::new("t1", &s);
        assert_eq!(other.for_event("order.created"), "t1.order.create");
        assert!(other.owns("t1.order.create") && other.owns("t1.orders.retry.200ms"));
        assert!(!other.owns("order.create") && !other.owns("t12.order.create"));
        assert_eq!(
            other.for_events(["payment.approved", "payment.declined", "order.ready"]),
            ["t1.order.create", "t1.payment.event"]
        );
        assert_eq!(
            other.for_events(["#"]),
            [r"^t1\.([^.]+\.event|order\.create|payment\.event)$"]
        );
    }

    #[test]
    fn retries_have_one_topic_per_step() {
        let t = Topics::new("kassa", &KafkaSettings::new("b:9092"));
        let steps = t.retries(
            "orders",
            &RetryPolicy {
                max_attempts: 4,
                base_delay: Duration::from_millis(100),
            },
        );
        let names: Vec<&str> = steps.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "kassa.orders.retry.100ms",
                "kassa.orders.retry.200ms",
                "kassa.orders.retry.400ms"
            ]
        );
    }

    #[cfg(feature = "kafka")]
    #[test]
    fn the_key_is_the_subject() {
        assert_eq!(
            client::subject_of(br#"{"id":"x","subject":"order-1","data":{"a":1}}"#).as_deref(),
            Some("order-1")
        );
        assert_eq!(client::subject_of(b"not json"), None);
    }
}
