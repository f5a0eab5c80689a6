//! Transactional outbox: events are written in the transaction of the change that causes them,
//! and a relay hands them to the bus, deleting each row only once the bus has confirmed it.
//!
//! Rows are claimed with a lease (`locked_until`), so several replicas can relay from one
//! database without publishing the same row twice at once, and a row claimed by a process that
//! died is published again once its lease runs out.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use futures_util::{StreamExt, stream::FuturesUnordered};
use kassa_contracts::Envelope;
use uuid::Uuid;

use crate::{
    bus::{EventBus, Message},
    db::{Arg, Backend, Db, DbResult, Tx, for_keys, for_rows, sql, sql_assembled},
    shutdown::Shutdown,
};

/// Adds `event` to the outbox inside `tx`; it is published after `tx` commits.
pub async fn add(tx: &mut Tx, event: &Envelope) -> DbResult<()> {
    add_all(tx, [event]).await
}

/// Adds many events to the outbox inside `tx` with a few multi-row statements.
pub async fn add_all(tx: &mut Tx, events: impl IntoIterator<Item = &Envelope>) -> DbResult<()> {
    let now = Utc::now();
    let rows: Vec<Vec<Arg>> = events
        .into_iter()
        .map(|e| {
            vec![
                Arg::from(e.id),
                Arg::from(e.event_type.as_str()),
                Arg::from(e.to_bytes()),
                Arg::from(now),
            ]
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    for_rows(
        tx,
        "INSERT INTO outbox (id, topic, body, created_at)",
        "",
        rows,
    )
    .await?;
    tx.mark_outbox_written();
    Ok(())
}

/// Adds a message as it is (used to redrive dead letters, whose body may not even parse).
pub async fn add_raw(tx: &mut Tx, id: Uuid, topic: &str, body: &[u8]) -> DbResult<()> {
    sql("INSERT INTO outbox (id, topic, body, created_at) VALUES ($1, $2, $3, $4)")
        .bind(id)
        .bind(topic)
        .bind(body.to_vec())
        .bind(Utc::now())
        .execute(&mut *tx)
        .await?;
    tx.mark_outbox_written();
    Ok(())
}

/// How many events wait in the outbox.
pub async fn pending(db: &Db) -> DbResult<i64> {
    sql("SELECT COUNT(*) AS n FROM outbox")
        .fetch_one(db)
        .await?
        .get("n")
}

/// How the relay paces itself.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// Rows claimed per query.
    pub batch: usize,
    /// Messages handed to the bus and not yet confirmed, at most.
    pub max_in_flight: usize,
    /// How long a claim holds before another relay may take the row.
    pub lease: Duration,
    /// How often to look for rows nobody announced (other replicas, expired leases).
    pub poll: Duration,
    /// How long a row waits after the bus refused it.
    pub retry_after: Duration,
}

impl Default for RelaySettings {
    fn default() -> Self {
        RelaySettings {
            batch: 512,
            max_in_flight: 4096,
            lease: Duration::from_secs(10),
            poll: Duration::from_millis(250),
            retry_after: Duration::from_secs(1),
        }
    }
}

/// How far behind its cursor a relay looks for rows committed out of sequence order.
const CURSOR_SLACK: i64 = 256;

struct Claimed {
    seq: i64,
    message: Message,
}

/// Claims up to `limit` unleased rows after `after` (a sequence number).
async fn claim(db: &Db, after: i64, limit: usize, lease: Duration) -> DbResult<Vec<Claimed>> {
    let now = Utc::now();
    let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(10));
    let text = format!(
        "UPDATE outbox SET locked_until = $1, attempts = attempts + 1 WHERE seq IN (
            SELECT seq FROM outbox WHERE seq > $4 AND (locked_until IS NULL OR locked_until < $2)
            ORDER BY seq LIMIT $3{}) RETURNING seq, id, topic, body",
        db.skip_locked()
    );
    let rows = sql_assembled(text)
        .bind(until)
        .bind(now)
        .bind(limit as i64)
        .bind(after)
        .fetch_all(db)
        .await?;
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        claimed.push(Claimed {
            seq: row.get("seq")?,
            message: Message {
                id: row.get("id")?,
                topic: row.get("topic")?,
                body: row.get("body")?,
            },
        });
    }
    claimed.sort_by_key(|c| c.seq);
    Ok(claimed)
}

async fn delete(db: &Db, seqs: &[i64]) -> DbResult<()> {
    for_keys(
        db,
        "DELETE FROM outbox WHERE seq IN",
        "",
        Vec::new(),
        seqs.iter().copied(),
    )
    .await?;
    Ok(())
}

async fn postpone(db: &Db, seqs: &[i64], after: Duration) -> DbResult<()> {
    let at = Utc::now() + chrono::Duration::from_std(after).unwrap_or(chrono::Duration::seconds(1));
    for_keys(
        db,
        "UPDATE outbox SET locked_until = $1 WHERE seq IN",
        "",
        vec![Arg::from(at)],
        seqs.iter().copied(),
    )
    .await?;
    Ok(())
}

/// Publishes the outbox of `db` to `bus` until `shutdown`; rows still pending then stay for the
/// next start.
pub async fn relay(db: Db, bus: Arc<dyn EventBus>, settings: RelaySettings, shutdown: Shutdown) {
    if db.backend() == Backend::Sqlite {
        // One process owns an SQLite file: leases left by a previous run belong to nobody now.
        if let Err(e) = sql("UPDATE outbox SET locked_until = NULL")
            .execute(&db)
            .await
        {
            tracing::warn!(error = %e, "could not clear outbox leases");
        }
    }
    let mut in_flight = FuturesUnordered::new();
    let mut cursor: i64 = 0;
    let mut last_full_scan = std::time::Instant::now() - settings.poll;
    let mut backoff = Duration::from_millis(100);
    loop {
        if shutdown.is_triggered() {
            break;
        }
        let room = settings.max_in_flight.saturating_sub(in_flight.len());
        let mut claimed_any = false;
        if room > 0 {
            // Rows this relay has claimed are leased, and a scan from the start would step over
            // every one of them (and over the dead versions they leave) on each claim. So claims
            // start a little before the last row claimed (transactions that commit out of
            // sequence order land there), and once per poll interval from the start, for
            // expired leases and stragglers.
            let from_start = last_full_scan.elapsed() >= settings.poll;
            let after = if from_start {
                0
            } else {
                cursor.saturating_sub(CURSOR_SLACK)
            };
            match claim(&db, after, room.min(settings.batch), settings.lease).await {
                Ok(rows) => {
                    backoff = Duration::from_millis(100);
                    if from_start {
                        last_full_scan = std::time::Instant::now();
                    }
                    claimed_any = !rows.is_empty();
                    if let Some(last) = rows.last() {
                        cursor = cursor.max(last.seq);
                    }
                    for row in rows {
                        let bus = bus.clone();
                        in_flight.push(async move {
                            let result = bus.publish(&row.message).await;
                            (row.seq, row.message.id, result)
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "outbox claim failed");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.wait() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
        }
        tokio::select! {
            Some(first) = in_flight.next(), if !in_flight.is_empty() => {
                let mut done = vec![first];
                while let Some(Some(more)) = futures_util::FutureExt::now_or_never(in_flight.next()) {
                    done.push(more);
                }
                settle(&db, done, &settings).await;
            }
            _ = db.outbox_written() => {}
            _ = tokio::time::sleep(settings.poll), if !claimed_any => {}
            _ = shutdown.wait() => {}
        }
    }
    // Let what was handed to the bus finish, so it is confirmed and deleted, not sent twice.
    let mut rest = Vec::new();
    let drain = async {
        while let Some(r) = in_flight.next().await {
            rest.push(r);
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .is_err()
    {
        tracing::warn!("outbox relay stopped with messages unconfirmed; they stay in the outbox");
    }
    settle(&db, rest, &settings).await;
}

async fn settle(
    db: &Db,
    done: Vec<(i64, Uuid, Result<(), crate::bus::BusError>)>,
    settings: &RelaySettings,
) {
    let mut published = Vec::with_capacity(done.len());
    let mut refused = Vec::new();
    for (seq, id, result) in done {
        match result {
            Ok(()) => published.push(seq),
            Err(e) => {
                // One line per batch, not per row: a broker outage refuses thousands at once.
                if refused.is_empty() {
                    tracing::warn!(event_id = %id, error = %e, "publish failed; will retry");
                }
                refused.push(seq);
            }
        }
    }
    if !refused.is_empty() {
        metrics::counter!("kassa_outbox_publish_failures_total").increment(refused.len() as u64);
        if let Err(e) = postpone(db, &refused, settings.retry_after).await {
            tracing::warn!(error = %e, "could not postpone outbox rows; their lease will expire");
        }
    }
    if published.is_empty() {
        return;
    }
    metrics::counter!("kassa_outbox_published_total").increment(published.len() as u64);
    if let Err(e) = delete(db, &published).await {
        // The rows will be published again when their lease ends; the inbox makes that harmless.
        tracing::warn!(error = %e, "could not delete published outbox rows");
    }
}
