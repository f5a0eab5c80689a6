//! Consumer inbox: an event's id is recorded in the transaction of its effect, so a redelivered
//! event is recognised and has no second effect.

use chrono::Utc;
use uuid::Uuid;

use crate::db::{DbResult, Tx, sql};

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
