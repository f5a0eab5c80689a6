//! Consumer inbox: an event's id is recorded in the transaction of its effect, so a redelivered
//! event is recognised and has no second effect.

use std::collections::HashSet;

use chrono::Utc;
use uuid::Uuid;

use crate::db::{Arg, DbResult, Tx, for_rows, sql};

/// Records that `consumer` handles `event_id` in `tx`. False means it was handled before and the
/// caller must do nothing.
pub async fn record(tx: &mut Tx, consumer: &str, event_id: Uuid) -> DbResult<bool> {
    let inserted = sql(
        "INSERT INTO inbox (consumer, event_id, handled_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(consumer)
    .bind(event_id)
    .bind(Utc::now())
    .execute(tx)
    .await?;
    Ok(inserted == 1)
}

/// Records many events at once; returns the ids handled for the first time (the caller acts on
/// those only).
pub async fn record_all(
    tx: &mut Tx,
    consumer: &str,
    event_ids: &[Uuid],
) -> DbResult<HashSet<Uuid>> {
    let now = Utc::now();
    let rows = event_ids
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
