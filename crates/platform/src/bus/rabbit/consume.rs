//! Consuming: deliveries handed to the handler (in batches when they arrive together),
//! acknowledged once handled; failures republished to a retry queue or, after the last attempt,
//! to the dead-letter queue, and acknowledged only once that copy is confirmed.

use super::*;

pub(super) fn attempt_of(delivery: &Delivery) -> u32 {
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
pub(super) const MAX_BATCH: usize = 64;

/// Handles deliveries that arrived together: as one batch when they all parse and the handler
/// takes them, else one by one, each with its own retries.
pub(super) async fn handle_deliveries(
    inner: &Inner,
    sub: &Subscription,
    out: &Channel,
    batch: Vec<Delivery>,
) {
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

pub(super) async fn handle_delivery(
    inner: &Inner,
    sub: &Subscription,
    out: &Channel,
    delivery: Delivery,
) {
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

pub(super) async fn retry_or_dead_letter(
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
