//! Consuming: a consumer group per subscription, reading its event topics and its retry topics;
//! one worker per partition, so partitions are handled side by side and each in order. A worker
//! holds at most `prefetch` records; when one is that far behind, reading waits for it (rather
//! than pausing the partition: resuming a paused partition skipped the records fetched before the
//! pause, seen with librdkafka 2.12 against tansu 0.6, and a burst test lost a tenth of its
//! events). Records
//! that arrived together are handled as one batch; a failed record is copied to the next retry
//! topic (or, after the last attempt, to the dead-letter topic) and its offset stored only once
//! the broker has that copy.

use std::collections::HashMap;

use futures_util::StreamExt;
use kassa_contracts::Envelope;
use rdkafka::{
    Message as _,
    consumer::{CommitMode, Consumer, StreamConsumer},
    message::OwnedMessage,
};
use tokio::{sync::mpsc, task::JoinSet};

use std::{sync::Arc, time::Duration};

use rdkafka::{ClientConfig, message::OwnedHeaders};

use super::*;
use crate::bus::{Batching, HandlerError, Subscription, Turns, deliver, topic_matches};

/// The longest a copied error message is.
const MAX_ERROR_LEN: usize = 1000;

/// How long a failing broker is waited for between tries of a copy.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

fn config(settings: &KafkaSettings, group: &str) -> ClientConfig {
    let mut c = client(settings);
    c.set("group.id", group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .set("fetch.wait.max.ms", "100")
        // What librdkafka fetches ahead, per consumer.
        .set("queued.max.messages.kbytes", "16384")
        .set("enable.partition.eof", "false");
    c
}

/// One partition's worker: where its records go.
struct Worker {
    records: mpsc::Sender<OwnedMessage>,
}

pub(super) async fn consume_forever(inner: Arc<Inner>, sub: Subscription) {
    let events = inner
        .topics
        .for_events(sub.topics.iter().map(String::as_str));
    let mut retries = inner.topics.retries(&sub.consumer, &inner.policy);
    // Redriven dead letters: due at once, one by one like retries.
    retries.push((inner.topics.redrive(&sub.consumer), Duration::ZERO));
    let mut all = events.clone();
    all.extend(retries.iter().map(|(t, _)| t.clone()));
    // The topics must exist before the group subscribes to them; a broker that is down delays
    // this, as long as it lasts.
    let mut backoff = Duration::from_millis(250);
    loop {
        if inner.shutdown.is_triggered() {
            return;
        }
        match inner.creator.ensure(&all).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(consumer = %sub.consumer, error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot make the consumer's topics yet");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = inner.shutdown.wait() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    let consumer: StreamConsumer = match config(&inner.settings, &inner.topics.group(&sub.consumer))
        .create()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(consumer = %sub.consumer, error = %e, "cannot create the Kafka consumer");
            return;
        }
    };
    let names: Vec<&str> = all.iter().map(String::as_str).collect();
    if let Err(e) = consumer.subscribe(&names) {
        tracing::error!(consumer = %sub.consumer, error = %e, "cannot subscribe");
        return;
    }
    tracing::info!(consumer = %sub.consumer, topics = ?names, "consuming");
    let consumer = Arc::new(consumer);
    let delays: HashMap<String, Duration> = retries.into_iter().collect();
    // Shared by the partitions' workers: a consumer that lingers handles one batch at a time.
    let turns = Turns::of(&sub.handler.batching());
    let mut workers: HashMap<(String, i32), Worker> = HashMap::new();
    let mut tasks = JoinSet::new();
    {
        let mut stream = consumer.stream();
        // How many partitions this replica has, as a gauge (`kassa_consumer_partitions`).
        let mut census = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = census.tick() => {
                    if let Ok(assigned) = consumer.assignment() {
                        let event_partitions = assigned
                            .elements()
                            .iter()
                            .filter(|e| events.iter().any(|t| t == e.topic()))
                            .count();
                        metrics::gauge!("kassa_consumer_partitions", "consumer" => sub.consumer.clone())
                            .set(event_partitions as f64);
                    }
                }
                next = stream.next() => match next {
                    Some(Ok(record)) => {
                        let record = record.detach();
                        let key = (record.topic().to_owned(), record.partition());
                        let worker = workers.entry(key).or_insert_with_key(|(topic, partition)| {
                            let (records, rx) = mpsc::channel(inner.prefetch);
                            tasks.spawn(work(
                                inner.clone(),
                                sub.clone(),
                                consumer.clone(),
                                (topic.clone(), *partition),
                                delays.get(topic).copied(),
                                turns.clone(),
                                rx,
                            ));
                            Worker { records }
                        });
                        // A worker that far behind holds up reading until it catches up.
                        tokio::select! {
                            sent = worker.records.send(record) => {
                                if sent.is_err() {
                                    tracing::error!(consumer = %sub.consumer, "a partition worker stopped");
                                }
                            }
                            _ = inner.shutdown.wait() => break,
                        }
                    }
                    Some(Err(e)) => {
                        // librdkafka reconnects and rejoins the group by itself.
                        tracing::warn!(consumer = %sub.consumer, error = %e, "Kafka consumer error");
                    }
                    None => break,
                },
                _ = inner.shutdown.wait() => break,
            }
        }
    }
    // Workers stop after the batch in hand; what they had not started is read again later.
    drop(workers);
    if tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!(consumer = %sub.consumer, "records still being handled at shutdown; they are read again later");
    }
    // Commit what was handled and leave the group, so its partitions move at once.
    let _ = tokio::task::spawn_blocking(move || {
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(error = %e, "final commit");
        }
        drop(consumer);
    })
    .await;
}

/// Handles one partition's records in order until its channel closes or shutdown.
async fn work(
    inner: Arc<Inner>,
    sub: Subscription,
    consumer: Arc<StreamConsumer>,
    (topic, partition): (String, i32),
    retry_delay: Option<Duration>,
    turns: Turns,
    mut records: mpsc::Receiver<OwnedMessage>,
) {
    // A batch cannot outgrow the records this worker may hold.
    let batching = Batching {
        max: sub.handler.batching().max.min(inner.prefetch),
        ..sub.handler.batching()
    };
    while let Some(first) = records.recv().await {
        if inner.shutdown.is_triggered() {
            return;
        }
        let started = tokio::time::Instant::now();
        let mut batch = vec![first];
        // Records of a retry topic are handled one at a time, each when it is due.
        if retry_delay.is_none() {
            while let Some(more) = batching.more(started, batch.len(), records.recv()).await {
                batch.push(more);
            }
        }
        let last = batch.last().map(|r| r.offset()).unwrap_or_default();
        let done = match retry_delay {
            Some(_) => handle_retry(&inner, &sub, &batch[0]).await,
            None => {
                let _turn = turns.take().await;
                handle_records(&inner, &sub, &batch).await
            }
        };
        if !done {
            // Stopping: the records are read again after a restart.
            return;
        }
        if let Err(e) = consumer.store_offset(&topic, partition, last) {
            // The partition went to another replica; it reads these again (the inbox makes
            // that harmless).
            tracing::debug!(consumer = %sub.consumer, error = %e, "offset not stored");
        }
    }
}

/// Whether the subscription wants a record: by its type header; a record without one is handed
/// over, for the handler to take or refuse.
fn wanted(sub: &Subscription, record: &OwnedMessage) -> bool {
    match header(record.headers(), TYPE_HEADER) {
        Some(event_type) => sub.topics.iter().any(|p| topic_matches(p, event_type)),
        None => true,
    }
}

/// Handles records of an event topic: as one batch when they all parse and the handler takes
/// them, else one by one. False when stopping before all were handled or copied on.
async fn handle_records(inner: &Inner, sub: &Subscription, batch: &[OwnedMessage]) -> bool {
    let records: Vec<&OwnedMessage> = batch.iter().filter(|r| wanted(sub, r)).collect();
    if records.len() > 1 {
        let envelopes: Option<Vec<Envelope>> = records
            .iter()
            .map(|r| Envelope::from_bytes(r.payload().unwrap_or_default()).ok())
            .collect();
        if let Some(envelopes) = envelopes {
            match sub.handler.handle_batch(&envelopes).await {
                Ok(()) => return true,
                Err(e) => {
                    tracing::debug!(consumer = %sub.consumer, error = %e, "batch failed; handling its events one by one")
                }
            }
        }
    }
    for record in records {
        if !handle_one(inner, sub, record, 1).await {
            return false;
        }
    }
    true
}

/// Handles a record of a retry topic once it is due.
async fn handle_retry(inner: &Inner, sub: &Subscription, record: &OwnedMessage) -> bool {
    let due = header(record.headers(), DUE_HEADER)
        .and_then(|d| d.parse::<i64>().ok())
        .unwrap_or(0);
    let wait = due - chrono::Utc::now().timestamp_millis();
    if wait > 0 {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
            _ = inner.shutdown.wait() => return false,
        }
    }
    let attempt = header(record.headers(), ATTEMPT_HEADER)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    handle_one(inner, sub, record, attempt).await
}

/// Hands a record to the handler; on failure copies it on. False when stopping before the copy
/// was acknowledged.
async fn handle_one(
    inner: &Inner,
    sub: &Subscription,
    record: &OwnedMessage,
    attempt: u32,
) -> bool {
    match deliver(sub.handler.as_ref(), record.payload().unwrap_or_default()).await {
        Ok(()) => true,
        Err(e) => copy_on(inner, sub, record, attempt, &e).await,
    }
}

/// Copies a failed record to the retry topic its next attempt waits in, or to the dead-letter
/// topic after the last attempt; retries the copy until the broker acknowledges it.
async fn copy_on(
    inner: &Inner,
    sub: &Subscription,
    record: &OwnedMessage,
    attempt: u32,
    error: &HandlerError,
) -> bool {
    let policy = &inner.policy;
    let source = header(record.headers(), SOURCE_HEADER)
        .unwrap_or(record.topic())
        .to_owned();
    let consumer = sub.consumer.clone();
    let (topic, next_attempt, delay) = if error.unavailable {
        // The consumer's own infrastructure is down: wait at the longest backoff, attempts
        // untouched, for as long as the outage lasts.
        metrics::counter!("kassa_consumer_unavailable_total", "consumer" => consumer.clone())
            .increment(1);
        let delay = policy.delay_after(policy.max_attempts.saturating_sub(1).max(1));
        tracing::warn!(consumer = %sub.consumer, retry_in_ms = delay.as_millis() as u64, error = %error, "handler cannot reach its infrastructure; will retry");
        (inner.topics.retry(&sub.consumer, delay), attempt, delay)
    } else if attempt < policy.max_attempts {
        let delay = policy.delay_after(attempt);
        metrics::counter!("kassa_consumer_retries_total", "consumer" => consumer.clone())
            .increment(1);
        tracing::warn!(consumer = %sub.consumer, attempt, retry_in_ms = delay.as_millis() as u64, error = %error, "handler failed; will retry");
        (inner.topics.retry(&sub.consumer, delay), attempt + 1, delay)
    } else {
        metrics::counter!("kassa_dead_letters_total", "consumer" => consumer.clone()).increment(1);
        tracing::error!(consumer = %sub.consumer, attempts = attempt, error = %error, "dead-lettering record");
        (inner.topics.dead_letters(&source), attempt, Duration::ZERO)
    };
    let due = chrono::Utc::now().timestamp_millis() + delay.as_millis() as i64;
    let mut message = error.message.clone();
    if message.len() > MAX_ERROR_LEN {
        let mut end = MAX_ERROR_LEN;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    let headers = || {
        let mut h = OwnedHeaders::new_with_capacity(8);
        for key in [TYPE_HEADER, ID_HEADER, "content-type"] {
            if let Some(v) = header(record.headers(), key) {
                h = with_header(h, key, v);
            }
        }
        h = with_header(h, CONSUMER_HEADER, &sub.consumer);
        h = with_header(h, SOURCE_HEADER, &source);
        h = with_header(h, ATTEMPT_HEADER, &next_attempt.to_string());
        h = with_header(h, ERROR_HEADER, &message);
        with_header(h, DUE_HEADER, &due.to_string())
    };
    let key = record
        .key()
        .and_then(|k| std::str::from_utf8(k).ok())
        .map(str::to_owned);
    let mut backoff = policy.base_delay.max(Duration::from_millis(50));
    loop {
        match inner
            .send(
                &topic,
                key.as_deref(),
                record.payload().unwrap_or_default(),
                headers(),
            )
            .await
        {
            Ok(()) => return true,
            Err(e) => {
                tracing::warn!(consumer = %sub.consumer, topic, error = %e, "could not copy a failed record; trying again");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = inner.shutdown.wait() => return false,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
