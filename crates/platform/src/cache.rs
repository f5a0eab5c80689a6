//! The cache port: Redis in the distributed mode, an in-memory map in the embedded one.
//!
//! A cache is never the source of truth: any failure (Redis down, slow, unreachable) is a miss,
//! and a write that fails is dropped, so the caller reads its database instead, and a request
//! never fails because of the cache.
//!
//! # Versions
//!
//! A value that changes is written with [`Cache::put_if_newer`] and a version that grows with
//! every change (the writer's choice: a counter, a timestamp, a state's rank). The write and the
//! comparison are one atomic step (a Lua script in Redis, moka's per-key compute in memory), so a
//! reader that loaded version 3 from its database and writes it after a change already cached
//! version 4 leaves version 4 in place. An equal version is written again: it is the same
//! content, refreshed.
//!
//! A deletion has the same race the other way round: a reader that loaded the row before it was
//! deleted could put it back after the deletion removed the entry. [`Cache::remove_if_newer`]
//! therefore leaves a tombstone, a version without a value that reads as a miss and refuses
//! writes of its version or older for its time to live; give it at least the time to live of the
//! values it replaces (a reader slower than that is not protected). Plain [`Cache::remove`]
//! keeps no tombstone: it suits keys whose writers do not race, or that are rewritten right after.
//!
//! Each lookup is counted: `kassa_cache_hits_total` and `kassa_cache_misses_total`, labelled with
//! the key's family, the part of the key before its first `:` (`payment:…` → `payment`).

use std::{
    sync::{Arc, Mutex, OnceLock, RwLock},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use redis::{AsyncCommands, aio::ConnectionManager};

#[async_trait]
pub trait Cache: Send + Sync + 'static {
    /// The value under `key`, if there is one (a tombstone is none).
    async fn get(&self, key: &str) -> Option<Vec<u8>>;
    /// Applies `write` (with `value`, none for a tombstone) if [`admits`] lets it replace the
    /// entry, in one atomic step. False when the cache did not answer (down, slow): the entry is
    /// then as it was, which a writer after a change may want to try again.
    async fn write(&self, key: &str, write: Write, value: Option<Vec<u8>>, ttl: Duration) -> bool;

    /// Stores `value` whatever the entry holds, without a version: for values that never change.
    async fn set(&self, key: &str, value: Vec<u8>, ttl: Duration) {
        // A value that never changes: a missed write is a later miss, nothing stale.
        let _answered = self.write(key, Write::Unversioned, Some(value), ttl).await;
    }

    /// Stores `value` as `version` unless the entry holds a newer version, or a tombstone of the
    /// same version or newer. False when the cache did not answer.
    async fn put_if_newer(&self, key: &str, version: i64, value: Vec<u8>, ttl: Duration) -> bool {
        self.write(key, Write::Value(version), Some(value), ttl)
            .await
    }

    /// Replaces the entry by a tombstone of `version`, unless the entry holds a newer version.
    /// False when the cache did not answer.
    async fn remove_if_newer(&self, key: &str, version: i64, ttl: Duration) -> bool {
        self.write(key, Write::Tombstone(version), None, ttl).await
    }
    /// Removes the entry, leaving nothing behind.
    async fn remove(&self, key: &str);
    /// Counts one more under `key` in a fixed window of `window` that starts at the first count:
    /// the count so far and the time left in the window, in one atomic step (every replica of a
    /// service shares the count). `None` when the cache did not answer.
    async fn count(&self, key: &str, window: Duration) -> Option<(u64, Duration)>;
    /// Whether the cache answers now (for `/health/ready`, as information: it is not required).
    async fn ping(&self) -> Result<(), String>;
}

/// Writes a changed value as `version` (see [`Cache::put_if_newer`]) for the writer that just
/// committed the change. A change must reach the cache, or a read would serve the state before
/// it until the entry expires: a write the cache did not answer (Redis slow or down) is tried
/// again for a few seconds (late writes are harmless, entries being versioned); if it still
/// fails, the entry is replaced by a tombstone of the version before, or removed.
pub async fn put_changed(
    cache: &dyn Cache,
    key: &str,
    version: i64,
    value: Vec<u8>,
    ttl: Duration,
) {
    settle(cache, key, Write::Value(version), Some(value), ttl).await;
}

/// Writes what a committed change left (`write` a value with `value`, or a tombstone for a
/// deletion): once here, so that the caller's next read sees it; if the cache does not answer,
/// again beside the caller, as [`put_changed`] does, so the caller is not held up.
pub async fn write_change(
    cache: &Arc<dyn Cache>,
    key: String,
    write: Write,
    value: Option<Vec<u8>>,
    ttl: Duration,
) {
    if cache.write(&key, write, value.clone(), ttl).await {
        return;
    }
    let cache = cache.clone();
    tokio::spawn(async move { settle(cache.as_ref(), &key, write, value, ttl).await });
}

async fn settle(cache: &dyn Cache, key: &str, write: Write, value: Option<Vec<u8>>, ttl: Duration) {
    let mut wait = Duration::from_millis(50);
    for _ in 0..6 {
        if cache.write(key, write, value.clone(), ttl).await {
            return;
        }
        tokio::time::sleep(wait).await;
        wait *= 2;
    }
    tracing::warn!(key, "the cache did not take a change; clearing its entry");
    let before = match write {
        Write::Value(v) | Write::Tombstone(v) => v.saturating_sub(1),
        Write::Unversioned => i64::MIN,
    };
    // A tombstone of the version before keeps older states out and lets this one in.
    if !cache.remove_if_newer(key, before, ttl).await {
        cache.remove(key).await;
    }
}

/// What a write asks of an entry.
#[derive(Debug, Clone, Copy)]
pub enum Write {
    Unversioned,
    Value(i64),
    Tombstone(i64),
}

/// Whether `write` may replace an entry last written as `current` (`None`: no entry, or an
/// unversioned one). The Redis script applies the same rule.
pub fn admits(current: Option<(i64, bool)>, write: Write) -> bool {
    let Some((version, is_tombstone)) = current else {
        return true;
    };
    match write {
        Write::Unversioned => true,
        Write::Value(new) => new > version || (new == version && !is_tombstone),
        Write::Tombstone(new) => new >= version,
    }
}

/// The label of `key` on the hit and miss counters.
fn family(key: &str) -> String {
    key.split_once(':')
        .map_or("other", |(family, _)| family)
        .to_owned()
}

fn count_lookup(key: &str, found: bool) {
    if found {
        metrics::counter!("kassa_cache_hits_total", "family" => family(key)).increment(1);
    } else {
        metrics::counter!("kassa_cache_misses_total", "family" => family(key)).increment(1);
    }
}

/// Milliseconds since 1970, for windows that end at a time.
fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// [`Cache::count`] in Redis: the counter expires a window after its first count.
const COUNT_SCRIPT: &str = r#"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  left = tonumber(ARGV[1])
end
return {n, left}
"#;

/// An entry of the memory cache.
#[derive(Clone)]
struct Stored {
    /// `None`: written by [`Cache::set`].
    version: Option<i64>,
    /// `None`: a tombstone.
    value: Option<Vec<u8>>,
    ttl: Duration,
}

/// Each entry lives for the time to live it was written with.
struct TimeToLive;

impl moka::Expiry<String, Stored> for TimeToLive {
    fn expire_after_create(&self, _: &String, stored: &Stored, _: Instant) -> Option<Duration> {
        Some(stored.ttl)
    }

    fn expire_after_update(
        &self,
        _: &String,
        stored: &Stored,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(stored.ttl)
    }
}

/// The embedded mode's cache: bounded, with a time to live per entry.
pub struct MemoryCache {
    entries: moka::future::Cache<String, Stored>,
    /// Counters ([`Cache::count`]: rate limits) apart from the entries, so that a churn of
    /// cached reads cannot evict a client's count and so reset its limit.
    counters: moka::future::Cache<String, Stored>,
}

/// Counters an in-memory cache keeps at most: clients counted in one window.
const MAX_COUNTERS: u64 = 100_000;

impl MemoryCache {
    pub fn new(max_entries: u64) -> Self {
        MemoryCache {
            entries: moka::future::Cache::builder()
                .max_capacity(max_entries)
                .expire_after(TimeToLive)
                .build(),
            counters: moka::future::Cache::builder()
                .max_capacity(MAX_COUNTERS)
                .expire_after(TimeToLive)
                .build(),
        }
    }

    async fn apply(&self, key: &str, write: Write, value: Option<Vec<u8>>, ttl: Duration) -> bool {
        use moka::ops::compute::Op;
        let version = match write {
            Write::Unversioned => None,
            Write::Value(v) | Write::Tombstone(v) => Some(v),
        };
        self.entries
            .entry(key.to_owned())
            .and_compute_with(|current| {
                let current = current.and_then(|entry| {
                    let stored = entry.value();
                    stored.version.map(|v| (v, stored.value.is_none()))
                });
                let op = if admits(current, write) {
                    Op::Put(Stored {
                        version,
                        value,
                        ttl,
                    })
                } else {
                    Op::Nop
                };
                std::future::ready(op)
            })
            .await;
        true
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let value = self.entries.get(key).await.and_then(|stored| stored.value);
        count_lookup(key, value.is_some());
        value
    }

    async fn write(&self, key: &str, write: Write, value: Option<Vec<u8>>, ttl: Duration) -> bool {
        self.apply(key, write, value, ttl).await
    }

    async fn remove(&self, key: &str) {
        self.entries.invalidate(key).await;
    }

    async fn count(&self, key: &str, window: Duration) -> Option<(u64, Duration)> {
        use moka::ops::compute::Op;
        // The value: the count, then when the window ends (milliseconds since 1970).
        let now = now_millis();
        let entry = self
            .counters
            .entry(key.to_owned())
            .and_compute_with(|current| {
                let (count, ends) = current
                    .and_then(|entry| entry.value().value.clone())
                    .and_then(|v| {
                        let count = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
                        let ends = u64::from_be_bytes(v.get(8..16)?.try_into().ok()?);
                        (ends > now).then_some((count, ends))
                    })
                    .unwrap_or((
                        0,
                        now + u64::try_from(window.as_millis()).unwrap_or(u64::MAX),
                    ));
                let mut value = (count + 1).to_be_bytes().to_vec();
                value.extend_from_slice(&ends.to_be_bytes());
                std::future::ready(Op::Put(Stored {
                    version: None,
                    value: Some(value),
                    ttl: Duration::from_millis(ends.saturating_sub(now).max(1)),
                }))
            })
            .await;
        let stored = entry.into_entry()?.into_value();
        let value = stored.value?;
        let count = u64::from_be_bytes(value.get(..8)?.try_into().ok()?);
        Some((count, stored.ttl))
    }

    async fn ping(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Every write to Redis: the entry is a hash of the version (`vh`, `vl`: its high and low 32
/// bits, for Lua's numbers are doubles) and the value (`d`, absent in a tombstone), replaced
/// only as [`admits`] says. ARGV: mode (`set`, `put`, `tomb`), vh, vl, time to live in
/// milliseconds, value. An entry of another type (an older layout) is replaced.
const WRITE_SCRIPT: &str = r"
local key, mode = KEYS[1], ARGV[1]
if mode ~= 'set' and redis.call('TYPE', key).ok == 'hash' then
  local cur = redis.call('HMGET', key, 'vh', 'vl', 'd')
  if cur[1] then
    local ch, cl = tonumber(cur[1]), tonumber(cur[2])
    local nh, nl = tonumber(ARGV[2]), tonumber(ARGV[3])
    local newer = nh > ch or (nh == ch and nl > cl)
    local same = nh == ch and nl == cl
    if not (newer or (same and (mode == 'tomb' or cur[3]))) then
      return 0
    end
  end
end
redis.call('DEL', key)
if mode == 'set' then
  redis.call('HSET', key, 'd', ARGV[5])
elseif mode == 'put' then
  redis.call('HSET', key, 'vh', ARGV[2], 'vl', ARGV[3], 'd', ARGV[5])
else
  redis.call('HSET', key, 'vh', ARGV[2], 'vl', ARGV[3])
end
redis.call('PEXPIRE', key, ARGV[4])
return 1
";

/// Redis with a short deadline on every command; while it is unreachable, reconnection is tried
/// at most once a second and every read is a miss. The connection multiplexes: commands share
/// it without waiting for each other, and no lock is held while one runs.
pub struct RedisCache {
    client: redis::Client,
    namespace: String,
    connection: RwLock<Option<ConnectionManager>>,
    /// Held by the one call that opens the connection. While the first connection is opened, the
    /// calls that arrive meanwhile wait for it (within their deadline) rather than each
    /// counting a miss or dropping a write.
    connecting: tokio::sync::Mutex<()>,
    last_attempt: Mutex<Option<Instant>>,
    /// The SHA-1 Redis gave the write script when it was loaded.
    script_sha: OnceLock<String>,
    deadline: Duration,
}

impl RedisCache {
    pub fn new(url: &str, namespace: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        Ok(RedisCache {
            client,
            namespace: namespace.to_owned(),
            connection: RwLock::new(None),
            connecting: tokio::sync::Mutex::new(()),
            last_attempt: Mutex::new(None),
            script_sha: OnceLock::new(),
            deadline: Duration::from_millis(250),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}:{key}", self.namespace)
    }

    fn current_connection(&self) -> Option<ConnectionManager> {
        self.connection
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn replace_connection(&self, connection: Option<ConnectionManager>) {
        *self
            .connection
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = connection;
    }

    /// Whether a reconnection may be tried now (the last one is at least a second old).
    fn may_reconnect(&self) -> bool {
        let mut last = self
            .last_attempt
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    async fn connection(&self) -> Option<ConnectionManager> {
        if let Some(c) = self.current_connection() {
            return Some(c);
        }
        // The first connection is waited for; a reconnection (Redis went away) is left to the
        // one call that makes it, and the others are misses meanwhile, as in any outage.
        let never_tried = self
            .last_attempt
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_none();
        let _opening = if never_tried {
            tokio::time::timeout(self.deadline * 4, self.connecting.lock())
                .await
                .ok()?
        } else {
            self.connecting.try_lock().ok()?
        };
        if let Some(c) = self.current_connection() {
            return Some(c);
        }
        if !self.may_reconnect() {
            return None;
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.deadline))
            .set_response_timeout(Some(self.deadline))
            .set_number_of_retries(1);
        match tokio::time::timeout(
            self.deadline * 4,
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await
        {
            Ok(Ok(c)) => {
                self.replace_connection(Some(c.clone()));
                Some(c)
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "redis unreachable; serving from the database");
                None
            }
            Err(_) => {
                tracing::warn!("redis connection timed out; serving from the database");
                None
            }
        }
    }

    async fn run<T>(
        &self,
        what: &str,
        f: impl AsyncFnOnce(ConnectionManager) -> redis::RedisResult<T>,
    ) -> Option<T> {
        let conn = self.connection().await?;
        match tokio::time::timeout(self.deadline, f(conn)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, op = what, "redis command failed");
                if e.is_connection_dropped() || e.is_io_error() || e.is_timeout() {
                    self.replace_connection(None);
                }
                None
            }
            Err(_) => {
                tracing::debug!(op = what, "redis command timed out");
                None
            }
        }
    }

    /// Runs the write script: by its SHA-1 once Redis has it, by its text when Redis lost it
    /// (a restart, `SCRIPT FLUSH`), which also loads it again.
    async fn apply(&self, key: &str, write: Write, value: Option<Vec<u8>>, ttl: Duration) -> bool {
        let key = self.key(key);
        let (mode, version) = match write {
            Write::Unversioned => ("set", 0),
            Write::Value(v) => ("put", v),
            Write::Tombstone(v) => ("tomb", v),
        };
        let args = (
            mode,
            version >> 32,
            version & 0xffff_ffff,
            u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1),
            value.unwrap_or_default(),
        );
        let sha = &self.script_sha;
        self.run("write", async move |mut c| {
            let sha = match sha.get() {
                Some(sha) => sha.clone(),
                None => {
                    let loaded: String = redis::cmd("SCRIPT")
                        .arg("LOAD")
                        .arg(WRITE_SCRIPT)
                        .query_async(&mut c)
                        .await?;
                    sha.get_or_init(|| loaded).clone()
                }
            };
            let by_sha = redis::cmd("EVALSHA")
                .arg(sha)
                .arg(1)
                .arg(&key)
                .arg(&args)
                .query_async::<i64>(&mut c)
                .await;
            match by_sha {
                Err(e)
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    redis::cmd("EVAL")
                        .arg(WRITE_SCRIPT)
                        .arg(1)
                        .arg(&key)
                        .arg(&args)
                        .query_async::<i64>(&mut c)
                        .await
                }
                other => other,
            }
        })
        .await
        .is_some()
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let namespaced = self.key(key);
        let value = self
            .run("get", async move |mut c| {
                c.hget::<_, _, Option<Vec<u8>>>(namespaced, "d").await
            })
            .await
            .flatten();
        count_lookup(key, value.is_some());
        value
    }

    async fn write(&self, key: &str, write: Write, value: Option<Vec<u8>>, ttl: Duration) -> bool {
        self.apply(key, write, value, ttl).await
    }

    async fn remove(&self, key: &str) {
        let key = self.key(key);
        self.run("del", async move |mut c| c.del::<_, ()>(key).await)
            .await;
    }

    async fn count(&self, key: &str, window: Duration) -> Option<(u64, Duration)> {
        let key = self.key(key);
        let window = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
        let (count, left): (u64, i64) = self
            .run("count", async move |mut c| {
                redis::cmd("EVAL")
                    .arg(COUNT_SCRIPT)
                    .arg(1)
                    .arg(&key)
                    .arg(window)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Some((count, Duration::from_millis(left.max(1).unsigned_abs())))
    }

    async fn ping(&self) -> Result<(), String> {
        self.run("ping", async move |mut c| {
            redis::cmd("PING").query_async::<String>(&mut c).await
        })
        .await
        .map(|_| ())
        .ok_or_else(|| "redis unreachable".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REDIS: &str = "redis://127.0.0.1:6379/";
    const LONG: Duration = Duration::from_secs(60);

    fn redis() -> RedisCache {
        RedisCache::new(REDIS, &format!("test-{}", uuid::Uuid::new_v4())).unwrap()
    }

    /// A key of its own family, so that counters read by one test are not moved by another.
    fn fresh_key() -> String {
        format!("t{}:k", uuid::Uuid::new_v4().simple())
    }

    /// Runs `body` against both adapters.
    async fn on_both<F: AsyncFn(&dyn Cache)>(body: F) {
        body(&MemoryCache::new(100)).await;
        body(&redis()).await;
    }

    #[tokio::test]
    async fn a_count_runs_through_its_window_then_starts_again() {
        on_both(async |cache| {
            let key = fresh_key();
            let window = Duration::from_millis(400);
            let (first, left) = cache.count(&key, window).await.expect("an answer");
            assert_eq!(first, 1);
            assert!(left > Duration::ZERO && left <= window, "{left:?}");
            for n in 2..=5 {
                let (count, later) = cache.count(&key, window).await.expect("an answer");
                assert_eq!(count, n);
                // The window started at the first count: later counts do not extend it.
                assert!(later <= left, "{later:?} after {left:?}");
            }
            assert_eq!(
                cache.count(&fresh_key(), window).await.map(|c| c.0),
                Some(1)
            );
            tokio::time::sleep(window + Duration::from_millis(100)).await;
            assert_eq!(cache.count(&key, window).await.map(|c| c.0), Some(1));
        })
        .await;
    }

    #[tokio::test]
    async fn a_churn_of_entries_does_not_reset_a_count() {
        // Room for ten entries: a thousand reads cached after the counts would evict them all.
        let cache = MemoryCache::new(10);
        let window = Duration::from_secs(60);
        for n in 1..=3 {
            assert_eq!(
                cache.count("ratelimit:signin:1", window).await.map(|c| c.0),
                Some(n)
            );
        }
        for i in 0..1_000 {
            cache
                .set(
                    &format!("order:{i}"),
                    b"{}".to_vec(),
                    Duration::from_secs(60),
                )
                .await;
        }
        cache.entries.run_pending_tasks().await;
        cache.counters.run_pending_tasks().await;
        assert!(cache.entries.entry_count() <= 10);
        assert_eq!(
            cache.count("ratelimit:signin:1", window).await.map(|c| c.0),
            Some(4)
        );
    }

    /// One step of a cache scenario.
    enum Step {
        /// `put_if_newer` with this version and value.
        Put(i64, &'static str),
        /// `remove_if_newer` with this version.
        Tomb(i64),
        /// `set`, which ignores versions.
        Set(&'static str),
        /// `remove`, which ignores versions.
        Remove,
        /// `get` answers this.
        Holds(Option<&'static str>),
    }
    use Step::*;

    /// Plays `steps` on a fresh key of each adapter.
    async fn scenario(steps: &[Step]) {
        on_both(async |cache| {
            let key = fresh_key();
            for (i, step) in steps.iter().enumerate() {
                match step {
                    Put(v, value) => assert!(
                        cache
                            .put_if_newer(&key, *v, value.as_bytes().to_vec(), LONG)
                            .await,
                        "step {i}"
                    ),
                    Tomb(v) => assert!(cache.remove_if_newer(&key, *v, LONG).await, "step {i}"),
                    Set(value) => cache.set(&key, value.as_bytes().to_vec(), LONG).await,
                    Remove => cache.remove(&key).await,
                    Holds(wanted) => assert_eq!(
                        cache.get(&key).await,
                        wanted.map(|w| w.as_bytes().to_vec()),
                        "step {i}"
                    ),
                }
            }
        })
        .await;
    }

    #[tokio::test]
    async fn an_older_version_never_replaces_a_newer_one() {
        scenario(&[
            Put(5, "five"),
            Put(4, "four"),
            Holds(Some("five")),
            Put(6, "six"),
            Holds(Some("six")),
            Put(6, "six again"),
            Holds(Some("six again")),
        ])
        .await;
    }

    #[tokio::test]
    async fn versions_compare_across_their_full_range() {
        // Differ only in bits a double cannot hold, then only in the sign.
        let big = (1_i64 << 60) + 1;
        scenario(&[Put(big, "big"), Put(big - 1, "older"), Holds(Some("big"))]).await;
        scenario(&[
            Put(1, "one"),
            Put(-1, "minus"),
            Holds(Some("one")),
            Put(i64::MAX, "max"),
            Holds(Some("max")),
        ])
        .await;
    }

    #[tokio::test]
    async fn a_tombstone_refuses_what_it_deleted_and_older() {
        scenario(&[
            Put(3, "three"),
            Tomb(2),
            Holds(Some("three")),
            Tomb(3),
            Holds(None),
            Put(3, "three"),
            Holds(None),
            Put(4, "four"),
            Holds(Some("four")),
        ])
        .await;
    }

    #[tokio::test]
    async fn set_and_remove_ignore_versions() {
        scenario(&[
            Put(9, "nine"),
            Set("plain"),
            Holds(Some("plain")),
            Put(1, "one"),
            Holds(Some("one")),
            Remove,
            Holds(None),
            Put(0, "zero"),
            Holds(Some("zero")),
        ])
        .await;
    }

    #[tokio::test]
    async fn entries_and_tombstones_expire() {
        on_both(async |cache| {
            let key = fresh_key();
            let short = Duration::from_millis(100);
            cache.put_if_newer(&key, 2, b"two".to_vec(), short).await;
            assert_eq!(cache.get(&key).await, Some(b"two".to_vec()));
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert_eq!(cache.get(&key).await, None);
            cache.put_if_newer(&key, 1, b"one".to_vec(), LONG).await;
            assert_eq!(cache.get(&key).await, Some(b"one".to_vec()));
            cache.remove_if_newer(&key, 5, short).await;
            assert_eq!(cache.get(&key).await, None);
            tokio::time::sleep(Duration::from_millis(200)).await;
            cache.put_if_newer(&key, 1, b"one".to_vec(), LONG).await;
            assert_eq!(cache.get(&key).await, Some(b"one".to_vec()));
        })
        .await;
    }

    #[tokio::test]
    async fn concurrent_writers_leave_the_newest_version() {
        on_both(async |cache| {
            // Connected first: a write while the connection is being made is dropped.
            assert!(cache.ping().await.is_ok());
            let key = fresh_key();
            let writes = (0..50_i64).rev().map(|v| {
                let key = key.clone();
                async move {
                    cache
                        .put_if_newer(&key, v, v.to_string().into_bytes(), LONG)
                        .await
                }
            });
            futures_util::future::join_all(writes).await;
            assert_eq!(cache.get(&key).await, Some(b"49".to_vec()));
        })
        .await;
    }

    fn counter(name: &str, family: &str) -> u64 {
        let label = format!("{name}{{family=\"{family}\"}} ");
        crate::http::prometheus()
            .render()
            .lines()
            .find_map(|line| line.strip_prefix(&label)?.parse().ok())
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn hits_and_misses_are_counted_by_family() {
        crate::http::prometheus();
        on_both(async |cache| {
            let key = fresh_key();
            let family = family(&key);
            cache.get(&key).await;
            cache.put_if_newer(&key, 1, b"1".to_vec(), LONG).await;
            cache.get(&key).await;
            cache.get(&key).await;
            assert_eq!(counter("kassa_cache_misses_total", &family), 1);
            assert_eq!(counter("kassa_cache_hits_total", &family), 2);
        })
        .await;
    }

    #[tokio::test]
    async fn writes_go_on_after_redis_forgets_the_script() {
        let cache = redis();
        let key = fresh_key();
        cache.put_if_newer(&key, 1, b"one".to_vec(), LONG).await;
        let mut other = redis::Client::open(REDIS)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async::<()>(&mut other)
            .await
            .unwrap();
        cache.put_if_newer(&key, 2, b"two".to_vec(), LONG).await;
        assert_eq!(cache.get(&key).await, Some(b"two".to_vec()));
    }

    #[tokio::test]
    async fn unreachable_redis_is_a_miss_not_an_error() {
        let cache = RedisCache::new("redis://127.0.0.1:1/", "t").unwrap();
        let started = std::time::Instant::now();
        cache.set("k", b"v".to_vec(), LONG).await;
        cache.put_if_newer("k", 1, b"v".to_vec(), LONG).await;
        cache.remove_if_newer("k", 1, LONG).await;
        cache.remove("k").await;
        assert_eq!(cache.get("k").await, None);
        assert!(cache.ping().await.is_err());
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn a_key_without_a_colon_is_of_the_other_family() {
        assert_eq!(family("payment:1:2"), "payment");
        assert_eq!(family("loose"), "other");
    }
}
