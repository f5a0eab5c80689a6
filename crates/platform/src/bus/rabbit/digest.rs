//! Digests: the events a publisher hands over together, as one message, for consumers of every
//! event.
//!
//! A consumer that wants every event (`#`, analytics) would have the broker store a copy of each
//! one in its queue: as many persistent messages again as the flows themselves need. Instead,
//! each event goes to the events exchange for the consumers of its type, and the events
//! published at about the same time go together, as one message, to the digests exchange
//! (fanout), which is where consumers of every event bind. A publish resolves once both the
//! event and the digest holding it are confirmed.
//!
//! A digest is handled as a batch of its events. Should that fail, each of its events is
//! handled on its own, and an event that fails is rerouted to the consumer's retry queue (or
//! dead-letter queue) as a message of its own: a digest is never retried or dead-lettered
//! whole, so `kassa dlq` sees and redrives single events only.
//!
//! The body is each event in turn: its id (16 bytes), its topic (length as 2 bytes big-endian,
//! then UTF-8) and its envelope (length as 4 bytes big-endian, then the bytes).

use std::sync::Weak;

use futures_util::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::*;

/// The header naming how many events a digest holds.
pub(super) const DIGEST_HEADER: &str = "x-kassa-digest";
const CONTENT_TYPE: &str = "application/vnd.kassa.digest";
/// The most events one digest holds, and the size beyond which it takes no more.
const MAX_EVENTS: usize = 64;
const MAX_BYTES: usize = 1 << 20;
/// Digests waiting for their confirm at once; events published meanwhile wait and go together.
const IN_FLIGHT: usize = 2;

/// True for a consumer of every event: it binds to the digests exchange.
pub(crate) fn every_event(topics: &[String]) -> bool {
    topics.iter().any(|t| t == "#")
}

/// One event of a digest.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Part<'a> {
    pub id: Uuid,
    pub topic: &'a str,
    pub body: &'a [u8],
}

pub(super) fn encode<'a>(messages: impl IntoIterator<Item = &'a Message>) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        let topic = &m.topic.as_bytes()[..m.topic.len().min(u16::MAX as usize)];
        out.extend_from_slice(m.id.as_bytes());
        out.extend_from_slice(&(topic.len() as u16).to_be_bytes());
        out.extend_from_slice(topic);
        out.extend_from_slice(&(m.body.len() as u32).to_be_bytes());
        out.extend_from_slice(&m.body);
    }
    out
}

/// The events of a digest's body, or `None` if it is not one.
pub(super) fn decode(mut data: &[u8]) -> Option<Vec<Part<'_>>> {
    fn take<'a>(data: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = data.split_at_checked(n)?;
        *data = rest;
        Some(head)
    }
    let mut parts = Vec::new();
    while !data.is_empty() {
        let id = Uuid::from_slice(take(&mut data, 16)?).ok()?;
        let n = u16::from_be_bytes(take(&mut data, 2)?.try_into().ok()?) as usize;
        let topic = std::str::from_utf8(take(&mut data, n)?).ok()?;
        let n = u32::from_be_bytes(take(&mut data, 4)?.try_into().ok()?) as usize;
        let body = take(&mut data, n)?;
        parts.push(Part { id, topic, body });
    }
    Some(parts)
}

/// How many events `delivery` holds: a digest's count, else one.
pub(super) fn events_in(delivery: &Delivery) -> usize {
    number_header(delivery, DIGEST_HEADER).map_or(1, |n| n as usize)
}

/// The events of `delivery` if it is a digest (and reads as one).
pub(super) fn parts_of(delivery: &Delivery) -> Option<Vec<Part<'_>>> {
    let is_digest = delivery
        .properties
        .headers()
        .as_ref()
        .is_some_and(|h| h.inner().contains_key(DIGEST_HEADER));
    if is_digest {
        decode(&delivery.data)
    } else {
        None
    }
}

type Waiting = (Message, oneshot::Sender<Result<(), BusError>>);

/// The publisher of one bus's digests: a task that takes the events waiting and publishes them
/// as one message, with at most [`IN_FLIGHT`] digests unconfirmed.
pub(super) struct Digests {
    waiting: mpsc::UnboundedSender<Waiting>,
}

impl Digests {
    /// Starts the task; it ends when the bus is dropped.
    pub(super) fn start(inner: Weak<Inner>) -> Self {
        let (waiting, queue) = mpsc::unbounded_channel();
        tokio::spawn(run(inner, queue));
        Digests { waiting }
    }

    /// Resolves once a digest holding `message` is confirmed.
    pub(super) async fn publish(&self, message: &Message) -> Result<(), BusError> {
        let (done, confirmed) = oneshot::channel();
        let stopped = || unavailable("the digest publisher has stopped");
        self.waiting
            .send((message.clone(), done))
            .map_err(|_| stopped())?;
        confirmed.await.map_err(|_| stopped())?
    }
}

async fn run(inner: Weak<Inner>, mut queue: mpsc::UnboundedReceiver<Waiting>) {
    let mut in_flight = FuturesUnordered::new();
    loop {
        if in_flight.len() >= IN_FLIGHT {
            in_flight.next().await;
            continue;
        }
        tokio::select! {
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
            first = queue.recv() => {
                let Some(first) = first else { break };
                let mut bytes = first.0.body.len();
                let mut digest = vec![first];
                while digest.len() < MAX_EVENTS && bytes < MAX_BYTES {
                    let Ok(more) = queue.try_recv() else { break };
                    bytes += more.0.body.len();
                    digest.push(more);
                }
                let Some(inner) = inner.upgrade() else { break };
                in_flight.push(async move {
                    let bus = RabbitBus { inner };
                    let result = bus.publish_digest(digest.iter().map(|(m, _)| m)).await;
                    for (_, done) in digest {
                        let _ = done.send(result.clone());
                    }
                });
            }
        }
    }
    while in_flight.next().await.is_some() {}
}

impl RabbitBus {
    async fn publish_digest<'a>(
        &self,
        messages: impl ExactSizeIterator<Item = &'a Message>,
    ) -> Result<(), BusError> {
        let count = messages.len() as u32;
        let props = persistent(&Uuid::now_v7().to_string())
            .with_content_type(CONTENT_TYPE.into())
            .with_headers(table(&[(DIGEST_HEADER, AMQPValue::LongUInt(count))]));
        self.publish_to(
            &self.inner.topology.digests_exchange(),
            "",
            &encode(messages),
            props,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(topic: &str, body: &str) -> Message {
        Message {
            id: Uuid::now_v7(),
            topic: topic.into(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_digest_reads_back_as_the_events_it_was_made_of() {
        let messages = [
            message("order.created", "{\"a\":1}"),
            message("payment.approved", ""),
            message("é.x", "{}"),
        ];
        let body = encode(&messages);
        let parts = decode(&body).expect("a digest");
        assert_eq!(parts.len(), 3);
        for (part, m) in parts.iter().zip(&messages) {
            assert_eq!(
                (part.id, part.topic, part.body),
                (m.id, m.topic.as_str(), &m.body[..])
            );
        }
        assert_eq!(decode(&[]), Some(Vec::new()));
    }

    #[test]
    fn a_cut_or_foreign_body_is_not_a_digest() {
        let body = encode(&[message("order.created", "{\"a\":1}")]);
        for cut in 1..body.len() {
            assert_eq!(decode(&body[..cut]), None, "cut at {cut}");
        }
        assert_eq!(decode(b"{\"specversion\":\"1.0\"}"), None);
    }
}
