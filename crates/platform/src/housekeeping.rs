//! Keeps a service database from growing without end: idempotency keys are kept for a day (as
//! Stripe keeps them), inbox entries for a week (far longer than any redelivery), each removed
//! oldest first in bounded batches so no sweep holds locks or bloats the log for long; and, on
//! PostgreSQL, a table whose dead rows (left by updates and deletes) outgrow a share of its
//! live ones is vacuumed, whether or not the server's autovacuum runs.

use std::time::Duration;

use chrono::Utc;

use crate::{
    db::{Backend, Db, DbResult, sql},
    shutdown::Shutdown,
};

pub const IDEMPOTENCY_KEYS_KEPT: Duration = Duration::from_secs(24 * 3600);
pub const INBOX_KEPT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Rows one delete removes at most.
const BATCH: i64 = 5_000;
/// A table is vacuumed once its dead rows number more than this...
const VACUUM_DEAD_ROWS: i64 = 10_000;
/// ...and more than one in this many of its live rows (autovacuum's default scale factor, 0.2).
const VACUUM_LIVE_PER_DEAD: i64 = 5;

/// What is removed by age: a statement deleting at most `$2` rows older than `$1`, oldest first,
/// and how long rows are kept.
const RETENTION: [(&str, Duration); 2] = [
    (
        "DELETE FROM idempotency_keys WHERE (scope, key) IN (
            SELECT scope, key FROM idempotency_keys WHERE created_at < $1 ORDER BY created_at LIMIT $2)",
        IDEMPOTENCY_KEYS_KEPT,
    ),
    (
        "DELETE FROM inbox WHERE (consumer, event_id) IN (
            SELECT consumer, event_id FROM inbox WHERE handled_at < $1 ORDER BY handled_at LIMIT $2)",
        INBOX_KEPT,
    ),
];

/// Deletes idempotency keys and inbox entries older than they are kept; returns how many rows.
pub async fn sweep(db: &Db) -> DbResult<u64> {
    let mut total = 0;
    for (statement, kept) in RETENTION {
        let before =
            Utc::now() - chrono::Duration::from_std(kept).unwrap_or(chrono::Duration::days(1));
        total += delete_in_batches(db, statement, before).await?;
    }
    Ok(total)
}

/// Runs `statement` (which deletes at most `$2` rows older than `$1`) until it deletes fewer.
async fn delete_in_batches(
    db: &Db,
    statement: &'static str,
    before: chrono::DateTime<Utc>,
) -> DbResult<u64> {
    let mut total = 0;
    loop {
        let n = sql(statement).bind(before).bind(BATCH).execute(db).await?;
        total += n;
        if n < BATCH as u64 {
            return Ok(total);
        }
        // Let the service's own writes through between batches.
        tokio::task::yield_now().await;
    }
}

/// Vacuums this database's tables whose dead rows outgrew their share (PostgreSQL); returns
/// the tables vacuumed.
pub async fn vacuum_churned(db: &Db) -> DbResult<Vec<String>> {
    if db.backend() != Backend::Postgres {
        return Ok(Vec::new());
    }
    let rows = sql("SELECT relname::text AS name FROM pg_stat_user_tables
         WHERE n_dead_tup > $1 AND n_dead_tup * $2 > n_live_tup ORDER BY n_dead_tup DESC")
    .bind(VACUUM_DEAD_ROWS)
    .bind(VACUUM_LIVE_PER_DEAD)
    .fetch_all(db)
    .await?;
    let mut vacuumed = Vec::with_capacity(rows.len());
    for row in rows {
        let table: String = row.get("name")?;
        db.vacuum(&table).await?;
        vacuumed.push(table);
    }
    Ok(vacuumed)
}

/// Sweeps expired rows every `every` and vacuums churned tables every `vacuum_every`, until
/// shutdown.
pub async fn run(db: Db, every: Duration, vacuum_every: Duration, shutdown: Shutdown) {
    let started = tokio::time::Instant::now();
    let mut sweeps = tokio::time::interval_at(started + every, every);
    let mut vacuums = tokio::time::interval_at(started + vacuum_every, vacuum_every);
    for timer in [&mut sweeps, &mut vacuums] {
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    loop {
        tokio::select! {
            _ = sweeps.tick() => match sweep(&db).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "swept expired idempotency keys and inbox entries"),
                Err(e) => tracing::warn!(error = %e, "housekeeping failed; will try again"),
            },
            _ = vacuums.tick() => match vacuum_churned(&db).await {
                Ok(tables) if tables.is_empty() => {}
                Ok(tables) => tracing::debug!(?tables, "vacuumed churned tables"),
                Err(e) => tracing::warn!(error = %e, "could not vacuum; will try again"),
            },
            _ = shutdown.wait() => return,
        }
    }
}
