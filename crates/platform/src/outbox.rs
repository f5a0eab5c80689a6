//! Transactional outbox: events are written in the transaction of the change that causes them,
//! and a relay hands them to the bus, deleting each row only once the bus has confirmed it.
//!
//! A row is written twice in its life: inserted, and deleted once published. One relay per
//! database publishes (the [`Leader`](crate::db::Leader): on PostgreSQL the process holding an
//! advisory lock, which a dead process releases at once), so rows need no per-row claim: the
//! relay reads them in sequence order after a cursor and remembers what it has handed to the bus.
//! Sequence numbers are taken when a row is written but become visible when its transaction
//! commits, possibly after a higher one: numbers the cursor passed without seeing (gaps) are
//! looked for again for a while, and a periodic sweep below the cursor finds any row that
//! committed later still. Deleted rows are vacuumed away as they accumulate, so the table's cost
//! stays that of the rows waiting, however many went before (see docs/architecture.md).

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use futures_util::{FutureExt, StreamExt, stream::FuturesUnordered};
use kassa_contracts::Envelope;
use uuid::Uuid;

use crate::{
    bus::{BusError, EventBus, Message},
    db::{Arg, Backend, Db, DbResult, Leader, Tx, for_keys, for_rows, sql},
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
    /// Rows read per query.
    pub batch: usize,
    /// Rows handed to the bus and not yet confirmed (or waiting to be offered again), at most.
    pub max_in_flight: usize,
    /// How often to look for rows when no commit in this process announced any (other replicas
    /// write to the same outbox).
    pub poll: Duration,
    /// How long a row waits after the bus refused it.
    pub retry_after: Duration,
    /// How long a sequence number the cursor passed is looked for before the sweep is left to
    /// find its row (a transaction that commits that long after writing to the outbox).
    pub gap_wait: Duration,
    /// How often rows below the cursor are looked for.
    pub sweep_every: Duration,
    /// Deleted rows after which the outbox is vacuumed (PostgreSQL).
    pub vacuum_after: u64,
    /// How often the outbox's depth, oldest row and dead-row ratios are measured for `/metrics`.
    pub watch_every: Duration,
}

impl Default for RelaySettings {
    fn default() -> Self {
        RelaySettings {
            batch: 512,
            max_in_flight: 4096,
            poll: Duration::from_millis(250),
            retry_after: Duration::from_secs(1),
            gap_wait: Duration::from_secs(2),
            sweep_every: Duration::from_secs(1),
            vacuum_after: 10_000,
            watch_every: Duration::from_secs(5),
        }
    }
}

/// The advisory lock whose holder relays a database's outbox.
const RELAY_JOB: i64 = 0x6b61_7373_6101;
/// How often the leader makes sure its lock's connection is still there.
const LEADER_CHECK: Duration = Duration::from_secs(1);
/// The most sequence gaps looked for at once (a rolled-back batch leaves one per row).
const MAX_GAPS: usize = 16_384;
/// Held rows a read may fetch again to see behind the cursor; past that, gaps are looked up by
/// number.
const REREAD_AT_MOST: usize = 512;
/// Gaps looked up by number in one read, at most.
const MAX_GAP_LOOKUP: usize = 512;

/// A row read from the outbox.
struct Read {
    seq: i64,
    message: Message,
    at: Instant,
}

type Outcome = (Read, Result<(), BusError>);

/// Publishes the outbox of `db` to `bus` until `shutdown` while this process leads for `db`,
/// and keeps the outbox small and measured; rows still pending at shutdown stay for the next
/// start. `service` labels its metrics.
pub async fn relay(
    service: &'static str,
    db: Db,
    bus: Arc<dyn EventBus>,
    settings: RelaySettings,
    shutdown: Shutdown,
) {
    let deleted = AtomicU64::new(0);
    tokio::join!(
        lead(service, &db, &bus, &settings, &shutdown, &deleted),
        keep(service, &db, &settings, &shutdown, &deleted),
    );
}

/// Relays whenever this process leads; otherwise waits to.
async fn lead(
    service: &'static str,
    db: &Db,
    bus: &Arc<dyn EventBus>,
    settings: &RelaySettings,
    shutdown: &Shutdown,
    deleted: &AtomicU64,
) {
    let leading = metrics::gauge!("kassa_outbox_relay_leader", "service" => service);
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_triggered() {
        let wait = match db.try_lead(RELAY_JOB).await {
            Ok(Some(leader)) => {
                backoff = Duration::from_millis(100);
                leading.set(1.0);
                tracing::debug!(service, "relaying the outbox");
                let relay = Relay {
                    service,
                    db,
                    bus,
                    settings,
                    deleted,
                    high: None,
                    gaps: BTreeMap::new(),
                    held: BTreeSet::new(),
                    retry: VecDeque::new(),
                    undeleted: Vec::new(),
                    last_sweep: Instant::now(),
                };
                relay.run(leader, shutdown).await;
                leading.set(0.0);
                // Lost the lock (its connection): try again soon.
                backoff
            }
            // Another process relays this outbox; take over if it goes.
            Ok(None) => LEADER_CHECK,
            Err(e) => {
                tracing::warn!(service, error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot reach the database to relay the outbox");
                backoff = (backoff * 2).min(Duration::from_secs(5));
                backoff
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait() => {}
        }
    }
}

/// The leader's state: what it has read and not yet settled, and where its cursor stands.
struct Relay<'a> {
    service: &'static str,
    db: &'a Db,
    bus: &'a Arc<dyn EventBus>,
    settings: &'a RelaySettings,
    deleted: &'a AtomicU64,
    /// The highest sequence number read; `None` before the first row.
    high: Option<i64>,
    /// Sequence numbers below `high` not seen yet, since when.
    gaps: BTreeMap<i64, Instant>,
    /// Rows handed to the bus (or waiting to be offered again) and not yet deleted.
    held: BTreeSet<i64>,
    /// Rows the bus refused, with when to offer them again.
    retry: VecDeque<(Instant, Read)>,
    /// Published rows whose delete failed, to delete again.
    undeleted: Vec<i64>,
    last_sweep: Instant,
}

impl Relay<'_> {
    async fn run(mut self, mut leader: Leader, shutdown: &Shutdown) {
        let mut in_flight = FuturesUnordered::new();
        let mut last_check = Instant::now();
        let mut backoff = Duration::from_millis(100);
        let bus: Arc<dyn EventBus> = self.bus.clone();
        let publish = |row: Read| {
            let bus = bus.clone();
            async move {
                let result = bus.publish(&row.message).await;
                (row, result)
            }
        };
        loop {
            if shutdown.is_triggered() {
                break;
            }
            if last_check.elapsed() >= LEADER_CHECK {
                last_check = Instant::now();
                if !leader.still_leads().await {
                    tracing::warn!(
                        service = self.service,
                        "lost the outbox relay's database connection; relaying again once it is back"
                    );
                    break;
                }
            }
            let now = Instant::now();
            while self.retry.front().is_some_and(|(due, _)| *due <= now) {
                if let Some((_, row)) = self.retry.pop_front() {
                    in_flight.push(publish(row));
                }
            }
            if !self.undeleted.is_empty() {
                self.delete(Vec::new()).await;
            }
            let room = self.settings.max_in_flight.saturating_sub(self.held.len());
            let mut read_any = false;
            let mut swept = false;
            if room > 0 {
                let last_sweep = self.last_sweep;
                match self.read(room.min(self.settings.batch)).await {
                    Ok(rows) => {
                        backoff = Duration::from_millis(100);
                        read_any = !rows.is_empty();
                        swept = self.last_sweep != last_sweep;
                        for row in rows {
                            self.held.insert(row.seq);
                            in_flight.push(publish(row));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(service = self.service, error = %e, retry_in_ms = backoff.as_millis() as u64, "reading the outbox failed");
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = shutdown.wait() => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                }
            }
            let next_retry = self.retry.front().map(|(due, _)| *due);
            tokio::select! {
                Some(first) = in_flight.next(), if !in_flight.is_empty() => {
                    let mut done = vec![first];
                    while let Some(Some(more)) = in_flight.next().now_or_never() {
                        done.push(more);
                    }
                    self.settle(done).await;
                }
                _ = self.db.outbox_written() => {}
                // A sweep reads only below the cursor, and says nothing of the rows after it
                // (those whose commit woke this read, say): read after the cursor at once.
                _ = std::future::ready(()), if swept => {}
                _ = tokio::time::sleep(self.settings.poll), if !read_any && !swept => {}
                _ = tokio::time::sleep_until(next_retry.unwrap_or(now).into()), if next_retry.is_some() => {}
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
            tracing::warn!(
                service = self.service,
                "outbox relay stopped with messages unconfirmed; they stay in the outbox"
            );
        }
        self.settle(rest).await;
        leader.resign().await;
    }

    /// The next rows to publish, at most `want`: after the cursor (and in the gaps behind it),
    /// or, once per sweep interval, anywhere below it.
    async fn read(&mut self, want: usize) -> DbResult<Vec<Read>> {
        let now = Instant::now();
        let gap_wait = self.settings.gap_wait;
        self.gaps
            .retain(|_, since| now.duration_since(*since) < gap_wait);
        let sweep = self.high.is_some() && self.last_sweep.elapsed() >= self.settings.sweep_every;
        let forward =
            "SELECT seq, id, topic, body FROM outbox WHERE seq > $1 ORDER BY seq LIMIT $2";
        // Rows this relay holds come back when they fall in the range read: each query asks for
        // that many more than it wants.
        let rows = match self.high {
            Some(high) if sweep => {
                self.last_sweep = now;
                let held = self.held.range(..=high).count();
                sql("SELECT seq, id, topic, body FROM outbox WHERE seq <= $1 ORDER BY seq LIMIT $2")
                    .bind(high)
                    .bind((want + held) as i64)
                    .fetch_all(self.db)
                    .await?
            }
            None => {
                sql(forward)
                    .bind(0i64)
                    .bind((want + self.held.len()) as i64)
                    .fetch_all(self.db)
                    .await?
            }
            Some(high) => {
                let after = self.gaps.first_key_value().map_or(high, |(gap, _)| gap - 1);
                let held = self.held.range(after + 1..).count();
                if held <= REREAD_AT_MOST {
                    // Usually: the gaps are transactions moments from committing, and the rows
                    // between them and the cursor few.
                    sql(forward)
                        .bind(after)
                        .bind((want + held) as i64)
                        .fetch_all(self.db)
                        .await?
                } else {
                    // A gap that lasts (a rolled-back transaction) would have every read fetch
                    // the rows held since again: look for the gaps by number instead.
                    let mut rows = sql(forward)
                        .bind(high)
                        .bind(want as i64)
                        .fetch_all(self.db)
                        .await?;
                    let gaps: Vec<i64> = self.gaps.keys().copied().take(MAX_GAP_LOOKUP).collect();
                    rows.extend(
                        for_keys(
                            self.db,
                            "SELECT seq, id, topic, body FROM outbox WHERE seq IN",
                            "",
                            Vec::new(),
                            gaps,
                        )
                        .await?,
                    );
                    let mut keyed = Vec::with_capacity(rows.len());
                    for row in rows {
                        keyed.push((row.get::<i64>("seq")?, row));
                    }
                    keyed.sort_by_key(|(seq, _)| *seq);
                    keyed.into_iter().map(|(_, row)| row).collect()
                }
            }
        };
        let mut fresh = Vec::with_capacity(rows.len().min(want));
        for row in rows {
            let seq: i64 = row.get("seq")?;
            if self.held.contains(&seq) {
                continue;
            }
            self.saw(seq, now);
            fresh.push(Read {
                seq,
                message: Message {
                    id: row.get("id")?,
                    topic: row.get("topic")?,
                    body: row.get("body")?,
                },
                at: now,
            });
            if fresh.len() == want {
                break;
            }
        }
        Ok(fresh)
    }

    /// Moves the cursor over `seq`: the numbers it skips are gaps to look for again.
    fn saw(&mut self, seq: i64, now: Instant) {
        match self.high {
            None => self.high = Some(seq),
            Some(high) if seq > high => {
                let room = MAX_GAPS.saturating_sub(self.gaps.len()) as i64;
                for gap in (high + 1)..seq.min(high + 1 + room) {
                    self.gaps.insert(gap, now);
                }
                self.high = Some(seq);
            }
            Some(_) => {
                self.gaps.remove(&seq);
            }
        }
    }

    /// Deletes what the bus confirmed and sets what it refused aside to offer again.
    async fn settle(&mut self, done: Vec<Outcome>) {
        let mut published = Vec::with_capacity(done.len());
        let mut oldest = None::<Instant>;
        let retry_at = Instant::now() + self.settings.retry_after;
        let mut refused = 0u64;
        for (row, result) in done {
            match result {
                Ok(()) => {
                    oldest = Some(oldest.map_or(row.at, |o| o.min(row.at)));
                    published.push(row.seq);
                }
                Err(e) => {
                    // One line per batch, not per row: a broker outage refuses thousands at once.
                    if refused == 0 {
                        tracing::warn!(service = self.service, event_id = %row.message.id, error = %e, "publish failed; will retry");
                    }
                    refused += 1;
                    self.retry.push_back((retry_at, row));
                }
            }
        }
        if refused > 0 {
            metrics::counter!("kassa_outbox_publish_failures_total", "service" => self.service)
                .increment(refused);
        }
        if published.is_empty() {
            return;
        }
        metrics::counter!("kassa_outbox_published_total", "service" => self.service)
            .increment(published.len() as u64);
        self.delete(published).await;
        if let Some(oldest) = oldest {
            metrics::histogram!("kassa_outbox_relay_batch_seconds", "service" => self.service)
                .record(oldest.elapsed().as_secs_f64());
        }
    }

    /// Deletes published rows, with any whose delete failed before. Rows stay held until their
    /// delete succeeds, so a failed delete is tried again, never the publish.
    async fn delete(&mut self, published: Vec<i64>) {
        let mut seqs = std::mem::take(&mut self.undeleted);
        seqs.extend(published);
        if seqs.is_empty() {
            return;
        }
        let deleting = for_keys(
            self.db,
            "DELETE FROM outbox WHERE seq IN",
            "",
            Vec::new(),
            seqs.iter().copied(),
        );
        match deleting.await {
            Ok(_) => {
                self.deleted.fetch_add(seqs.len() as u64, Ordering::Relaxed);
                for seq in &seqs {
                    self.held.remove(seq);
                }
            }
            Err(e) => {
                tracing::warn!(service = self.service, rows = seqs.len(), error = %e, "could not delete published outbox rows; will try again");
                self.undeleted = seqs;
            }
        }
    }
}

/// The platform's tables whose dead-row ratio `/metrics` shows.
const WATCHED_TABLES: [&str; 3] = ["outbox", "inbox", "idempotency_keys"];

/// Vacuums the outbox as the relay deletes from it, and measures it for `/metrics`.
async fn keep(
    service: &'static str,
    db: &Db,
    settings: &RelaySettings,
    shutdown: &Shutdown,
    deleted: &AtomicU64,
) {
    let mut last_watch: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.wait() => return,
        }
        if deleted.load(Ordering::Relaxed) >= settings.vacuum_after {
            deleted.store(0, Ordering::Relaxed);
            match db.vacuum("outbox").await {
                Ok(()) => metrics::counter!("kassa_outbox_vacuums_total", "service" => service)
                    .increment(1),
                Err(e) => tracing::warn!(service, error = %e, "could not vacuum the outbox"),
            }
        }
        if last_watch.is_none_or(|at| at.elapsed() >= settings.watch_every) {
            last_watch = Some(Instant::now());
            if let Err(e) = watch(service, db).await {
                tracing::debug!(service, error = %e, "could not measure the outbox");
            }
        }
    }
}

/// Sets the outbox's depth, its oldest row's age and the platform tables' dead-row ratios.
async fn watch(service: &'static str, db: &Db) -> DbResult<()> {
    let row = sql("SELECT COUNT(*) AS n FROM outbox")
        .fetch_one(db)
        .await?;
    metrics::gauge!("kassa_outbox_pending", "service" => service).set(row.get::<i64>("n")? as f64);
    let oldest = sql("SELECT created_at FROM outbox ORDER BY seq LIMIT 1")
        .fetch_optional(db)
        .await?
        .map(|r| r.get::<DateTime<Utc>>("created_at"))
        .transpose()?;
    let age = oldest.map_or(0.0, |at| {
        (Utc::now() - at).num_milliseconds().max(0) as f64 / 1000.0
    });
    metrics::gauge!("kassa_outbox_oldest_pending_seconds", "service" => service).set(age);
    if db.backend() == Backend::Postgres {
        let rows = for_keys(
            db,
            "SELECT relname::text AS name, n_live_tup AS live, n_dead_tup AS dead FROM pg_stat_user_tables WHERE relname IN",
            "",
            Vec::new(),
            WATCHED_TABLES,
        )
        .await?;
        for row in rows {
            let (name, live, dead): (String, i64, i64) =
                (row.get("name")?, row.get("live")?, row.get("dead")?);
            let ratio = if live + dead > 0 {
                dead as f64 / (live + dead) as f64
            } else {
                0.0
            };
            if let Some(table) = WATCHED_TABLES.iter().find(|t| **t == name) {
                metrics::gauge!("kassa_table_dead_rows_ratio", "service" => service, "table" => *table)
                    .set(ratio);
            }
        }
    }
    Ok(())
}
