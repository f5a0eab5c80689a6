//! The cache port: Redis in the distributed mode, an in-memory map in the embedded one.
//!
//! A cache is never the source of truth: any failure (Redis down, slow, unreachable) is a miss,
//! so the caller reads its database instead, and a request never fails because of the cache.

use std::time::Duration;

use async_trait::async_trait;
use redis::{AsyncCommands, aio::ConnectionManager};
use tokio::sync::Mutex;

#[async_trait]
pub trait Cache: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Option<Vec<u8>>;
    async fn set(&self, key: &str, value: Vec<u8>, ttl: Duration);
    async fn remove(&self, key: &str);
    /// Whether the cache answers now (for `/health/ready`, as information: it is not required).
    async fn ping(&self) -> Result<(), String>;
}

/// The embedded mode's cache: bounded, with a time to live per entry.
pub struct MemoryCache {
    entries: moka::future::Cache<String, (Vec<u8>, std::time::Instant)>,
}

impl MemoryCache {
    pub fn new(max_entries: u64) -> Self {
        MemoryCache {
            entries: moka::future::Cache::new(max_entries),
        }
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self.entries.get(key).await {
            Some((value, expires)) if expires > std::time::Instant::now() => Some(value),
            Some(_) => {
                self.entries.invalidate(key).await;
                None
            }
            None => None,
        }
    }

    async fn set(&self, key: &str, value: Vec<u8>, ttl: Duration) {
        self.entries
            .insert(key.to_owned(), (value, std::time::Instant::now() + ttl))
            .await;
    }

    async fn remove(&self, key: &str) {
        self.entries.invalidate(key).await;
    }

    async fn ping(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Redis with a short deadline on every command; while it is unreachable, reconnection is tried
/// at most once a second and every read is a miss.
pub struct RedisCache {
    client: redis::Client,
    namespace: String,
    connection: Mutex<Option<ConnectionManager>>,
    last_attempt: Mutex<Option<std::time::Instant>>,
    deadline: Duration,
}

impl RedisCache {
    pub fn new(url: &str, namespace: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        Ok(RedisCache {
            client,
            namespace: namespace.to_owned(),
            connection: Mutex::new(None),
            last_attempt: Mutex::new(None),
            deadline: Duration::from_millis(250),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}:{key}", self.namespace)
    }

    async fn connection(&self) -> Option<ConnectionManager> {
        if let Some(c) = self.connection.lock().await.as_ref() {
            return Some(c.clone());
        }
        {
            let mut last = self.last_attempt.lock().await;
            if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                return None;
            }
            *last = Some(std::time::Instant::now());
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
                *self.connection.lock().await = Some(c.clone());
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
                    *self.connection.lock().await = None;
                }
                None
            }
            Err(_) => {
                tracing::debug!(op = what, "redis command timed out");
                None
            }
        }
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let key = self.key(key);
        self.run("get", async move |mut c| {
            c.get::<_, Option<Vec<u8>>>(key).await
        })
        .await
        .flatten()
    }

    async fn set(&self, key: &str, value: Vec<u8>, ttl: Duration) {
        let key = self.key(key);
        let secs = ttl.as_secs().max(1);
        self.run("set", async move |mut c| {
            c.set_ex::<_, _, ()>(key, value, secs).await
        })
        .await;
    }

    async fn remove(&self, key: &str) {
        let key = self.key(key);
        self.run("del", async move |mut c| c.del::<_, ()>(key).await)
            .await;
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

    #[tokio::test]
    async fn memory_entries_expire() {
        let cache = MemoryCache::new(100);
        cache
            .set("a", b"1".to_vec(), Duration::from_millis(30))
            .await;
        assert_eq!(cache.get("a").await, Some(b"1".to_vec()));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(cache.get("a").await, None);
    }

    #[tokio::test]
    async fn unreachable_redis_is_a_miss_not_an_error() {
        let cache = RedisCache::new("redis://127.0.0.1:1/", "t").unwrap();
        let started = std::time::Instant::now();
        cache.set("k", b"v".to_vec(), Duration::from_secs(5)).await;
        assert_eq!(cache.get("k").await, None);
        assert!(cache.ping().await.is_err());
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}
