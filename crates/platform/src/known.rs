//! What a service knows of other services' records, from the `<kind>.created|updated|deleted`
//! events the resource kit publishes: which exist and which were deleted. A service refuses a
//! reference to a record it does not know (an unknown or deleted member, say) from its own
//! copy, never by reading another service's database.
//!
//! A deletion is final: ids are never reused, so `deleted` once set stays set, and an event
//! that arrives after the deletion (a redelivery, a reordering) changes nothing.

use chrono::{DateTime, Utc};
use kassa_contracts::Envelope;
use uuid::Uuid;

use crate::{
    bus::HandlerError,
    db::{Db, DbResult, Tx, sql, sql_assembled},
};

/// What an event said of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated,
    Deleted,
}

/// A record event as a copy reads it: the kind (`member`), what happened, and to which record.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordEvent {
    pub kind: String,
    pub change: Change,
    pub id: Uuid,
    /// The record as it was after the change (as it was before, for a deletion).
    pub data: serde_json::Value,
    pub at: DateTime<Utc>,
}

impl RecordEvent {
    /// Reads `<kind>.created|updated|deleted` carrying a record with its `id`.
    pub fn decode(event: &Envelope) -> Result<Self, HandlerError> {
        let (kind, change) = event
            .event_type
            .rsplit_once('.')
            .and_then(|(kind, change)| {
                let change = match change {
                    "created" => Change::Created,
                    "updated" => Change::Updated,
                    "deleted" => Change::Deleted,
                    _ => return None,
                };
                Some((kind.to_owned(), change))
            })
            .ok_or_else(|| {
                HandlerError::new(format!("{} is not a record event", event.event_type))
            })?;
        let id = event
            .data
            .get("id")
            .and_then(|v| v.as_str())
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or_else(|| {
                HandlerError::new(format!("{} carries no record id", event.event_type))
            })?;
        Ok(RecordEvent {
            kind,
            change,
            id,
            data: event.data.clone(),
            at: event.time,
        })
    }
}

/// Notes in `tx` what `event` says: the record exists, or was deleted for good.
pub async fn note(tx: &mut Tx, event: &RecordEvent) -> DbResult<()> {
    sql(
        "INSERT INTO known_records (kind, id, deleted, seen_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (kind, id) DO UPDATE SET deleted = known_records.deleted OR excluded.deleted, \
         seen_at = excluded.seen_at",
    )
    .bind(event.kind.as_str())
    .bind(event.id)
    .bind(event.change == Change::Deleted)
    .bind(event.at)
    .execute(tx)
    .await?;
    Ok(())
}

/// Whether a record of `kind` with `id` is known and not deleted, read in `tx`. The answer
/// holds until `tx` ends: a deletion arriving meanwhile waits for it, then sees what `tx` wrote
/// (so an enrolment made in `tx` is removed by the member's deletion, never left behind).
pub async fn exists(tx: &mut Tx, kind: &str, id: Uuid) -> DbResult<bool> {
    let row = sql_assembled(format!(
        "SELECT deleted FROM known_records WHERE kind = $1 AND id = $2{}",
        tx.for_share()
    ))
    .bind(kind)
    .bind(id)
    .fetch_optional(tx)
    .await?;
    Ok(match row {
        Some(row) => !row.get::<bool>("deleted")?,
        None => false,
    })
}

/// How many records of `kind` are known and not deleted (for readiness of a copy, and tests).
pub async fn count(db: &Db, kind: &str) -> DbResult<i64> {
    let row = sql("SELECT COUNT(*) AS n FROM known_records WHERE kind = $1 AND NOT deleted")
        .bind(kind)
        .fetch_one(db)
        .await?;
    row.get("n")
}
