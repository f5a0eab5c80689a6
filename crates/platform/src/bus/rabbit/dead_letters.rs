//! `kassa dlq list` and `kassa dlq redrive` on RabbitMQ: each consumer's dead-letter queue.

use super::*;

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
                .and_then(|h| h.inner().get(TOPIC_HEADER).cloned())
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
