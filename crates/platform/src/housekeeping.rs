//! Keeps the platform's own tables from growing without end: idempotency keys are kept for a
//! day (as Stripe keeps them), inbox entries for a week (far longer than any redelivery).

use std::time::Duration;

use chrono::Utc;

use crate::{
    db::{Db, DbResult, sql},
    shutdown::Shutdown,
};

pub const IDEMPOTENCY_KEYS_KEPT: Duration = Duration::from_secs(24 * 3600);
pub const INBOX_KEPT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Deletes idempotency keys and inbox entries older than they are kept; returns how many rows.
pub async fn sweep(db: &Db) -> DbResult<u64> {
    let ago = |d: Duration| {
        Utc::now() - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::days(1))
    };
    let keys = sql("DELETE FROM idempotency_keys WHERE created_at < $1")
        .bind(ago(IDEMPOTENCY_KEYS_KEPT))
        .execute(db)
        .await?;
    let inbox = sql("DELETE FROM inbox WHERE handled_at < $1")
        .bind(ago(INBOX_KEPT))
        .execute(db)
        .await?;
    Ok(keys + inbox)
}

/// Sweeps every `every` until shutdown.
pub async fn run(db: Db, every: Duration, shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait() => return,
        }
        match sweep(&db).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "swept expired idempotency keys and inbox entries"),
            Err(e) => tracing::warn!(error = %e, "housekeeping failed; will try again"),
        }
    }
}
