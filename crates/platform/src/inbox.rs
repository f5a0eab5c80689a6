//! Consumer inbox: an event's id is recorded in the transaction of its effect, so a redelivered
//! event is recognised and has no second effect.
//!
//! A consumer whose state is a projection that may have to be made again (analytics' reports)
//! keeps each event whole instead ([`keep_all`]): the kept event is its inbox entry, never
//! forgotten, and [`kept`] replays them in the order they were made.

use std::collections::HashSet;

use chrono::Utc;
use kassa_contracts::Envelope;
use uuid::Uuid;

use crate::db::{Arg, DbResult, Target, Tx, for_rows, sql};

/// Records that `consumer` handles `event_id` in `tx`. False means it was handled before and the
/// caller must do nothing.
pub async fn record(tx: &mut Tx, consumer: &str, event_id: Uuid) -> DbResult<bool> {
    Ok(record_all(tx, consumer, &[event_id])
        .await?
        .contains(&event_id))
}

/// Records many events at once; returns the ids handled for the first time (the caller acts on
/// those only).
pub async fn record_all(
    tx: &mut Tx,
    consumer: &str,
    event_ids: &[Uuid],
) -> DbResult<HashSet<Uuid>> {
    let now = Utc::now();
    // In id order, as every batch locks what it touches.
    let mut ids = event_ids.to_vec();
    ids.sort_unstable();
    let rows = ids
        .iter()
        .map(|id| vec![Arg::from(consumer), Arg::from(*id), Arg::from(now)])
        .collect();
    let inserted = for_rows(
        tx,
        "INSERT INTO inbox (consumer, event_id, handled_at)",
        "ON CONFLICT DO NOTHING RETURNING event_id",
        rows,
    )
    .await?;
    inserted.iter().map(|r| r.get("event_id")).collect()
}

/// Keeps many events whole for `consumer`, each once: what [`record_all`] does for a consumer
/// that replays its events ([`crate::consumer::Apply::KEEPS_EVENTS`]), with one row an event.
/// Returns the ids kept for the first time (the caller acts on those only).
pub async fn keep_all(tx: &mut Tx, consumer: &str, events: &[Envelope]) -> DbResult<HashSet<Uuid>> {
    let mut sorted: Vec<&Envelope> = events.iter().collect();
    sorted.sort_unstable_by_key(|e| e.id);
    sorted.dedup_by_key(|e| e.id);
    let rows = sorted
        .into_iter()
        .map(|e| {
            vec![
                Arg::from(consumer),
                Arg::from(e.id),
                Arg::from(e.to_bytes()),
            ]
        })
        .collect();
    let kept = for_rows(
        tx,
        "INSERT INTO kept_events (consumer, event_id, envelope)",
        "ON CONFLICT DO NOTHING RETURNING event_id",
        rows,
    )
    .await?;
    kept.iter().map(|r| r.get("event_id")).collect()
}

/// An event a consumer kept, as it was stored.
#[derive(Debug, Clone)]
pub struct Kept {
    pub id: Uuid,
    pub bytes: Vec<u8>,
}

impl Kept {
    /// The envelope; an error if what was kept no longer reads as one.
    pub fn envelope(&self) -> Result<Envelope, serde_json::Error> {
        Envelope::from_bytes(&self.bytes)
    }
}

/// Up to `limit` of the events `consumer` kept, in the order they were made (ids are
/// time-ordered), beginning after the event `after`: a replay reads them page by page.
pub async fn kept<'a>(
    target: impl Into<Target<'a>>,
    consumer: &str,
    after: Option<Uuid>,
    limit: i64,
) -> DbResult<Vec<Kept>> {
    let rows = sql(
        "SELECT event_id, envelope FROM kept_events WHERE consumer = $1 AND event_id > $2 \
         ORDER BY event_id LIMIT $3",
    )
    .bind(consumer)
    .bind(after.unwrap_or(Uuid::nil()))
    .bind(limit)
    .fetch_all(target)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Kept {
                id: r.get("event_id")?,
                bytes: r.get("envelope")?,
            })
        })
        .collect()
}
