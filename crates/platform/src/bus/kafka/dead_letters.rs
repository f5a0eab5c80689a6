//! `kassa dlq list` and `kassa dlq redrive` on Kafka. A dead-letter topic (`<topic>-dlq`) is
//! shared by every consumer of `<topic>`; each record names the consumer that gave up on it. A
//! consumer's dead letters are the records for it after its redrive group's committed offsets:
//! listing reads them and moves nothing, redriving copies them to the consumer's redrive topic
//! (attempts start afresh) and then commits the group past them.

use std::collections::HashMap;

use rdkafka::{
    Message as _, Offset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer},
    message::OwnedMessage,
};

use rdkafka::{message::OwnedHeaders, producer::FutureRecord};

use super::*;
use crate::bus::{BusError, DeadLetter};

/// How long reading a dead-letter topic to its end may take.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The records of `topic` after `group`'s committed offsets, and the offsets at its end.
fn read_after_group(
    settings: &KafkaSettings,
    group: &str,
    topic: &str,
) -> Result<(Vec<OwnedMessage>, TopicPartitionList), BusError> {
    let consumer: BaseConsumer = client(settings)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(unavailable)?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .map_err(unavailable)?;
    let mut ends = TopicPartitionList::new();
    let Some(meta) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok((Vec::new(), ends));
    };
    if meta.error().is_some() {
        // No such topic: nothing was ever dead-lettered there.
        return Ok((Vec::new(), ends));
    }
    let mut all = TopicPartitionList::new();
    for p in meta.partitions() {
        all.add_partition(topic, p.id());
    }
    let committed = consumer
        .committed_offsets(all, Duration::from_secs(5))
        .map_err(unavailable)?;
    let mut start = TopicPartitionList::new();
    let mut remaining = HashMap::new();
    for p in meta.partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic, p.id(), Duration::from_secs(5))
            .map_err(unavailable)?;
        let from = match committed.find_partition(topic, p.id()).map(|e| e.offset()) {
            Some(Offset::Offset(n)) => n.max(low),
            _ => low,
        };
        ends.add_partition_offset(topic, p.id(), Offset::Offset(high))
            .map_err(unavailable)?;
        if from < high {
            start
                .add_partition_offset(topic, p.id(), Offset::Offset(from))
                .map_err(unavailable)?;
            remaining.insert(p.id(), high);
        }
    }
    let mut records = Vec::new();
    if remaining.is_empty() {
        return Ok((records, ends));
    }
    consumer.assign(&start).map_err(unavailable)?;
    let deadline = std::time::Instant::now() + READ_TIMEOUT;
    while !remaining.is_empty() {
        if std::time::Instant::now() > deadline {
            return Err(unavailable(format!("timed out reading {topic}")));
        }
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(record)) => {
                let (partition, offset) = (record.partition(), record.offset());
                if remaining
                    .get(&partition)
                    .is_some_and(|high| offset + 1 >= *high)
                {
                    remaining.remove(&partition);
                }
                records.push(record.detach());
            }
            Some(Err(e)) => return Err(unavailable(e)),
            None => {}
        }
    }
    Ok((records, ends))
}

/// A consumer's dead-letter topics: one per topic it reads.
fn dead_letter_topics(topics: &Topics, event_types: &[&str]) -> Vec<String> {
    topics
        .for_events(event_types.iter().copied())
        .iter()
        .filter(|t| !t.starts_with('^'))
        .map(|t| topics.dead_letters(t))
        .collect()
}

fn as_dead_letter(topic: &str, record: &OwnedMessage) -> DeadLetter {
    let headers = record.headers();
    DeadLetter {
        queue: topic.to_owned(),
        id: header(headers, ID_HEADER).and_then(|id| id.parse().ok()),
        topic: header(headers, TYPE_HEADER)
            .or(header(headers, SOURCE_HEADER))
            .unwrap_or(topic)
            .to_owned(),
        error: header(headers, ERROR_HEADER).unwrap_or_default().to_owned(),
        attempts: header(headers, ATTEMPT_HEADER)
            .and_then(|a| a.parse().ok())
            .unwrap_or(1),
        body: String::from_utf8_lossy(record.payload().unwrap_or_default()).into_owned(),
    }
}

fn for_consumer(record: &OwnedMessage, consumer: &str) -> bool {
    header(record.headers(), CONSUMER_HEADER) == Some(consumer)
}

/// Reads the dead letters of each consumer (its name and the event types it consumes) without
/// moving anything.
pub async fn list_dead_letters(
    settings: &KafkaSettings,
    namespace: &str,
    consumers: &[(&str, &[&str])],
) -> Result<Vec<DeadLetter>, BusError> {
    let topics = Topics::new(namespace, settings);
    let mut out = Vec::new();
    for (consumer, event_types) in consumers {
        for dlq in dead_letter_topics(&topics, event_types) {
            let (settings, group, consumer_name, dlq2) = (
                settings.clone(),
                topics.redrive_group(consumer),
                consumer.to_string(),
                dlq.clone(),
            );
            let (records, _) =
                tokio::task::spawn_blocking(move || read_after_group(&settings, &group, &dlq2))
                    .await
                    .map_err(unavailable)??;
            out.extend(
                records
                    .iter()
                    .filter(|r| for_consumer(r, &consumer_name))
                    .map(|r| as_dead_letter(&dlq, r)),
            );
        }
    }
    Ok(out)
}

/// Sends a consumer's dead letters back for a fresh set of attempts; answers how many went.
pub async fn redrive_dead_letters(
    settings: &KafkaSettings,
    namespace: &str,
    consumer: &str,
    event_types: &[&str],
) -> Result<usize, BusError> {
    let topics = Topics::new(namespace, settings);
    let retry = topics.redrive(consumer);
    let producer = producer(settings)?;
    let creator = Creator::new(settings)?;
    creator.ensure(std::slice::from_ref(&retry)).await?;
    let mut moved = 0;
    for dlq in dead_letter_topics(&topics, event_types) {
        let (s, group, topic) = (
            settings.clone(),
            topics.redrive_group(consumer),
            dlq.clone(),
        );
        let (records, ends) =
            tokio::task::spawn_blocking(move || read_after_group(&s, &group, &topic))
                .await
                .map_err(unavailable)??;
        for record in records.iter().filter(|r| for_consumer(r, consumer)) {
            let mut headers = OwnedHeaders::new_with_capacity(8);
            for key in [
                TYPE_HEADER,
                ID_HEADER,
                "content-type",
                CONSUMER_HEADER,
                SOURCE_HEADER,
            ] {
                if let Some(v) = header(record.headers(), key) {
                    headers = with_header(headers, key, v);
                }
            }
            headers = with_header(headers, ATTEMPT_HEADER, "1");
            headers = with_header(
                headers,
                DUE_HEADER,
                &chrono::Utc::now().timestamp_millis().to_string(),
            );
            let mut out = FutureRecord::to(&retry)
                .payload(record.payload().unwrap_or_default())
                .headers(headers);
            if let Some(key) = record.key() {
                out = out.key(key);
            }
            producer
                .send(out, Duration::from_secs(5))
                .await
                .map_err(|(e, _)| unavailable(e))?;
            moved += 1;
        }
        if ends.count() > 0 {
            let (s, group) = (settings.clone(), topics.redrive_group(consumer));
            tokio::task::spawn_blocking(move || -> Result<(), BusError> {
                let c: BaseConsumer = client(&s)
                    .set("group.id", &group)
                    .set("enable.auto.commit", "false")
                    .create()
                    .map_err(unavailable)?;
                c.commit(&ends, CommitMode::Sync).map_err(unavailable)
            })
            .await
            .map_err(unavailable)??;
        }
    }
    Ok(moved)
}
