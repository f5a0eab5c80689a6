//! Consumer inbox: an event's id is recorded in the transaction of its effect, so a redelivered
//! event is recognised and has no second effect.

use std::collections::HashSet;

use chrono::Utc;
use uuid::Uuid;

use crate::db::{Arg, DbResult, Tx, for_rows};

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
