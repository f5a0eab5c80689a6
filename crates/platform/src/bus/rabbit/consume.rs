//! Consuming: deliveries handed to the handler (in batches when they arrive together),
//! acknowledged once handled; failures republished to a retry queue or, after the last attempt,
//! to the dead-letter queue, and acknowledged only once that copy is confirmed.

use std::collections::BTreeSet;

use super::*;

/// A header of `delivery` holding a whole number that is not negative.
pub(super) fn number_header(delivery: &Delivery, name: &str) -> Option<u32> {
    match delivery.properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongLongInt(n) => u32::try_from(*n).ok(),
        AMQPValue::LongInt(n) => u32::try_from(*n).ok(),
        AMQPValue::LongUInt(n) => Some(*n),
        _ => None,
    }
}

pub(super) fn attempt_of(delivery: &Delivery) -> u32 {
    number_header(delivery, ATTEMPT_HEADER).unwrap_or(1)
}

pub(super) fn error_of(properties: &BasicProperties) -> String {
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

pub(super) async fn consume_forever(inner: Arc<Inner>, sub: Subscription) {
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
pub(super) async fn consume_once(inner: &Arc<Inner>, sub: &Subscription) -> Result<(), BusError> {
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
    // Room for the batch being handled and the next one filling. A digest holds up to 64
    // events, so a consumer of digests keeps the prefetch configured (in messages).
    let batching = sub.handler.batching();
    let prefetch = if digest::every_event(&sub.topics) {
        inner.prefetch
    } else {
        inner
            .prefetch
            .max(u16::try_from(batching.max.saturating_mul(2)).unwrap_or(u16::MAX))
    };
    ch.basic_qos(prefetch, BasicQosOptions::default())
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
    let in_flight = Arc::new(Semaphore::new(prefetch as usize));
    let acks = Arc::new(Mutex::new(Acks::default()));
    let turns = Turns::of(&batching);
    let result = loop {
        tokio::select! {
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    // Whatever else has arrived (or comes within the handler's linger) goes
                    // with it, to be handled as a batch; a digest counts as the events it holds.
                    let started = tokio::time::Instant::now();
                    let mut events = digest::events_in(&delivery);
                    let mut batch = vec![delivery];
                    let mut broken = None;
                    while let Some(more) = batching.more(started, events, consumer.next()).await {
                        match more {
                            Ok(more) => {
                                events += digest::events_in(&more);
                                batch.push(more);
                            }
                            Err(e) => {
                                broken = Some(unavailable(e));
                                break;
                            }
                        }
                    }
                    let permits = in_flight.clone().acquire_many_owned(batch.len() as u32).await.map_err(unavailable)?;
                    acks.lock().await.received(batch.iter().map(|d| d.delivery_tag));
                    let turn = turns.take().await;
                    let (inner, sub, out) = (inner.clone(), sub.clone(), out.clone());
                    let (ch, acks, turns) = (ch.clone(), acks.clone(), turns.clone());
                    tokio::spawn(async move {
                        handle_deliveries(&inner, &sub, &out, &ch, &acks, &turns, batch).await;
                        drop((turn, permits));
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
        in_flight.acquire_many(u32::from(prefetch)),
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

/// A channel's deliveries not acknowledged yet: those being handled, and those handled and
/// waiting to be acknowledged together. Batches finish in any order, so a batch's deliveries
/// are acknowledged (`multiple`, one frame for all) only up to the oldest delivery still being
/// handled, and a later batch's acknowledgement takes them along. Deliveries settled one by one
/// (the failure path) leave without one.
#[derive(Default)]
pub(super) struct Acks {
    handling: BTreeSet<u64>,
    handled: BTreeSet<u64>,
}

impl Acks {
    pub(super) fn received(&mut self, tags: impl IntoIterator<Item = u64>) {
        self.handling.extend(tags);
    }

    /// A delivery acknowledged, rejected or requeued on its own.
    pub(super) fn settled(&mut self, tag: u64) {
        self.handling.remove(&tag);
    }

    /// Marks `tags` handled, and answers the delivery to acknowledge with `multiple`: the newest
    /// handled one older than every delivery still being handled.
    pub(super) fn handled(&mut self, tags: impl IntoIterator<Item = u64>) -> Option<u64> {
        for tag in tags {
            self.handling.remove(&tag);
            self.handled.insert(tag);
        }
        let oldest_handling = self.handling.first().copied().unwrap_or(u64::MAX);
        let upto = self.handled.range(..oldest_handling).next_back().copied()?;
        self.handled = self.handled.split_off(&(upto + 1));
        Some(upto)
    }
}

/// Acknowledges the handled deliveries `handled`, with those handled before them that waited
/// (and may wait no longer now that the deliveries `settled` on their own are out of the way).
/// The lock is held while the frame goes, so acknowledgements leave in the order of their tags
/// (the broker refuses a `multiple` acknowledgement of a tag an earlier one already covered).
async fn acknowledge(
    sub: &Subscription,
    ch: &Channel,
    acks: &Mutex<Acks>,
    handled: Vec<u64>,
    settled: Vec<u64>,
) {
    let mut acks = acks.lock().await;
    for tag in settled {
        acks.settled(tag);
    }
    if let Some(upto) = acks.handled(handled)
        && let Err(e) = ch.basic_ack(upto, BasicAckOptions { multiple: true }).await
    {
        tracing::warn!(consumer = %sub.consumer, error = %e, "acknowledgement lost; the broker will redeliver");
    }
}

/// Handles deliveries that arrived together (a digest's events among them): as one batch when
/// they all parse and the handler takes them, else one by one, each with its own retries.
pub(super) async fn handle_deliveries(
    inner: &Inner,
    sub: &Subscription,
    out: &Channel,
    ch: &Channel,
    acks: &Mutex<Acks>,
    turns: &Turns,
    batch: Vec<Delivery>,
) {
    let digests: Vec<Option<Vec<digest::Part<'_>>>> = batch.iter().map(digest::parts_of).collect();
    let bodies: Vec<&[u8]> = batch
        .iter()
        .zip(&digests)
        .flat_map(|(d, parts)| match parts {
            Some(parts) => parts.iter().map(|p| p.body).collect(),
            None => vec![&d.data[..]],
        })
        .collect();
    if bodies.len() > 1 {
        let envelopes: Option<Vec<Envelope>> = bodies
            .iter()
            .map(|body| Envelope::from_bytes(body).ok())
            .collect();
        if let Some(envelopes) = envelopes {
            match sub.handler.handle_batch(&envelopes).await {
                Ok(()) => {
                    let tags = batch.iter().map(|d| d.delivery_tag).collect();
                    acknowledge(sub, ch, acks, tags, Vec::new()).await;
                    return;
                }
                Err(e) => {
                    tracing::debug!(consumer = %sub.consumer, error = %e, "batch failed; handling its events one by one")
                }
            }
        }
    }
    let width = turns.width(bodies.len());
    drop(bodies);
    let each: Vec<_> = batch
        .iter()
        .zip(digests)
        .map(|(d, parts)| async move {
            let outcome = match parts {
                Some(parts) => handle_digest(inner, sub, out, d, parts, width).await,
                None => handle_delivery(inner, sub, out, d).await,
            };
            (d.delivery_tag, outcome)
        })
        .collect();
    let outcomes: Vec<(u64, Outcome)> = futures_util::stream::iter(each)
        .buffer_unordered(width)
        .collect()
        .await;
    let (mut handled, mut settled) = (Vec::new(), Vec::new());
    for (tag, outcome) in outcomes {
        match outcome {
            Outcome::Handled => handled.push(tag),
            Outcome::Settled => settled.push(tag),
        }
    }
    acknowledge(sub, ch, acks, handled, settled).await;
}

/// How one delivery ended: handled (to be acknowledged with its batch), or settled on its own
/// (rerouted to a retry or dead-letter queue and acknowledged, or given back).
pub(super) enum Outcome {
    Handled,
    Settled,
}

pub(super) async fn handle_delivery(
    inner: &Inner,
    sub: &Subscription,
    out: &Channel,
    delivery: &Delivery,
) -> Outcome {
    let Err(e) = deliver(sub.handler.as_ref(), &delivery.data).await else {
        return Outcome::Handled;
    };
    let rerouted = retry_or_dead_letter(inner, sub, out, Failed::delivery(delivery), &e).await;
    settle(inner, sub, delivery, rerouted).await
}

/// Handles a digest's events one by one: the digest is handled once each of its events is,
/// or has been rerouted, as a message of its own, to the retry or dead-letter queue.
async fn handle_digest(
    inner: &Inner,
    sub: &Subscription,
    out: &Channel,
    delivery: &Delivery,
    parts: Vec<digest::Part<'_>>,
    width: usize,
) -> Outcome {
    let each: Vec<_> = parts
        .iter()
        .map(|part| async move {
            match deliver(sub.handler.as_ref(), part.body).await {
                Ok(()) => Ok(()),
                Err(e) => retry_or_dead_letter(inner, sub, out, Failed::part(part), &e).await,
            }
        })
        .collect();
    let rerouted: Vec<Result<(), BusError>> = futures_util::stream::iter(each)
        .buffer_unordered(width)
        .collect()
        .await;
    let rerouted: Result<(), BusError> = rerouted.into_iter().collect();
    match rerouted {
        Ok(()) => Outcome::Handled,
        // The events handled are in the inbox, and those rerouted already are in a retry
        // queue: handled again, each is harmless (a rerouted one may be retried twice).
        Err(e) => settle(inner, sub, delivery, Err(e)).await,
    }
}

/// Settles a delivery that failed on its own: acknowledged once its copy is in a retry or
/// dead-letter queue, else given back to its queue.
async fn settle(
    inner: &Inner,
    sub: &Subscription,
    delivery: &Delivery,
    rerouted: Result<(), BusError>,
) -> Outcome {
    let acked = match rerouted {
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
    };
    if let Err(e) = acked {
        tracing::warn!(consumer = %sub.consumer, error = %e, "acknowledgement lost; the broker will redeliver");
    }
    Outcome::Settled
}

/// An event that failed, as it is rerouted: its envelope, its headers so far (the topic among
/// them), its id and the attempt that failed.
pub(super) struct Failed<'a> {
    data: &'a [u8],
    headers: FieldTable,
    message_id: String,
    attempt: u32,
}

impl<'a> Failed<'a> {
    fn delivery(delivery: &'a Delivery) -> Self {
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        // The first delivery's routing key is the event type; retries arrive from a retry queue.
        if !headers.inner().contains_key(TOPIC_HEADER) {
            headers.insert(TOPIC_HEADER.into(), text(delivery.routing_key.as_str()));
        }
        Failed {
            data: &delivery.data,
            headers,
            message_id: delivery
                .properties
                .message_id()
                .clone()
                .map(|s| s.to_string())
                .unwrap_or_default(),
            attempt: attempt_of(delivery),
        }
    }

    /// A digest's event: its first attempt, whatever became of the digest.
    fn part(part: &digest::Part<'a>) -> Self {
        Failed {
            data: part.body,
            headers: table(&[(TOPIC_HEADER, text(part.topic))]),
            message_id: part.id.to_string(),
            attempt: 1,
        }
    }
}

pub(super) async fn retry_or_dead_letter(
    inner: &Inner,
    sub: &Subscription,
    out: &Channel,
    failed: Failed<'_>,
    error: &HandlerError,
) -> Result<(), BusError> {
    let topology = &inner.topology;
    let Failed {
        data,
        mut headers,
        message_id,
        attempt,
    } = failed;
    headers.insert(ERROR_HEADER.into(), text(&error.message));
    if error.unavailable {
        // The consumer's own infrastructure is down: wait at the longest backoff, attempts
        // untouched, for as long as the outage lasts.
        metrics::counter!("kassa_consumer_unavailable_total", "consumer" => sub.consumer.clone())
            .increment(1);
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
            data,
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
            data,
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
            data,
            props,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::Acks;

    #[test]
    fn a_batch_is_acknowledged_only_up_to_the_oldest_delivery_still_being_handled() {
        let mut acks = Acks::default();
        acks.received(1..=3);
        acks.received(4..=6);
        // The later batch finishes first: nothing older than 1 is done, so nothing goes.
        assert_eq!(acks.handled(4..=6), None);
        // Then the first: one acknowledgement covers both.
        assert_eq!(acks.handled(1..=3), Some(6));
        assert_eq!(acks.handled(std::iter::empty()), None);
    }

    #[test]
    fn deliveries_settled_on_their_own_are_never_the_tag_acknowledged() {
        let mut acks = Acks::default();
        acks.received(1..=4);
        // 1 failed and was rerouted (acknowledged on its own); 2 is still being retried.
        acks.settled(1);
        assert_eq!(acks.handled([3, 4]), None);
        // 2 settles too: 3 and 4 go, in one acknowledgement naming a tag not yet acknowledged.
        acks.settled(2);
        assert_eq!(acks.handled(std::iter::empty()), Some(4));
        assert_eq!(acks.handled(std::iter::empty()), None);
        acks.received([5]);
        assert_eq!(acks.handled([5]), Some(5));
    }
}
