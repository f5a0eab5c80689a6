//! The exchanges and queues of one namespace, and declaring them.

use super::*;

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
    pub fn digests_exchange(&self) -> String {
        format!("{}.digests", self.namespace)
    }
    pub(super) fn dead_exchange(&self) -> String {
        format!("{}.dead", self.namespace)
    }
    pub fn queue(&self, consumer: &str) -> String {
        format!("{}.{consumer}", self.namespace)
    }
    pub fn dead_letter_queue(&self, consumer: &str) -> String {
        format!("{}.{consumer}.dlq", self.namespace)
    }
    pub(super) fn retry_queue(&self, consumer: &str, delay: Duration) -> String {
        format!(
            "{}.{consumer}.retry.{}ms",
            self.namespace,
            delay.as_millis()
        )
    }
}

pub(super) async fn declare_exchanges(ch: &Channel, topology: &Topology) -> Result<(), BusError> {
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
        topology.digests_exchange().into(),
        ExchangeKind::Fanout,
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

pub(super) fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

pub(super) fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.to_owned()))
}

pub(super) async fn declare_queue(
    ch: &Channel,
    name: &str,
    args: FieldTable,
) -> Result<u32, BusError> {
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

/// Binds `queue` to `exchange` for messages routed with `key`.
async fn bind(ch: &Channel, queue: &str, exchange: &str, key: &str) -> Result<(), BusError> {
    ch.queue_bind(
        queue.into(),
        exchange.into(),
        key.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(unavailable)
}

/// Declares a consumer's queue, its retry queues and its dead-letter queue.
pub(super) async fn declare_consumer(
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
    bind(ch, &dlq, &topology.dead_exchange(), &queue).await?;
    let main_args = table(&[
        ("x-dead-letter-exchange", text(&topology.dead_exchange())),
        ("x-dead-letter-routing-key", text(&queue)),
    ]);
    declare_queue(ch, &queue, main_args).await?;
    if super::digest::every_event(topics) {
        bind(ch, &queue, &topology.digests_exchange(), "").await?;
        // A queue declared before digests existed took every event one by one too.
        ch.queue_unbind(
            queue.as_str().into(),
            topology.events_exchange().into(),
            "#".into(),
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)?;
    } else {
        for topic in topics {
            bind(ch, &queue, &topology.events_exchange(), topic).await?;
        }
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
