//! The database port: one handle over PostgreSQL or SQLite, so a service writes each query once.
//!
//! Queries use `$1` placeholders, which both backends accept. Arguments are bound as [`Arg`]s and
//! rows read through [`Row::get`], which only accepts types both drivers can decode. The little
//! that differs between dialects (row locking, how a write transaction starts) lives here.
//!
//! - `error.rs`: failures, and which mean the database is unreachable
//! - `query.rs`: arguments, queries, rows
//! - `batch.rs`: many rows or keys in a few statements
//! - `sqlite.rs`: what SQLite connections hold at rest (the library's settings, readers' lookaside)

mod batch;
mod error;
mod leader;
mod lease;
mod query;
mod sqlite;

pub use batch::{for_keys, for_rows};
pub use error::{DbError, DbResult};
pub use leader::Leader;
pub use lease::Lease;
pub use query::{Arg, Column, Query, Row, Target, sql, sql_assembled};

use std::{path::Path, str::FromStr, sync::Arc, time::Duration};

use sqlx::{
    Connection, Postgres, Sqlite,
    postgres::{PgConnectOptions, PgPool, PgPoolOptions},
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
    },
};
use tokio::sync::Notify;

/// Which backend a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

#[derive(Clone)]
enum Pool {
    Pg(PgPool),
    /// SQLite takes one writer at a time. Writers queue for the single write connection in
    /// the pool (fair and asynchronous) rather than in SQLite's busy handler, which sleeps in
    /// growing steps and collapses under contention; reads run beside them on their own
    /// connections (WAL).
    Sqlite {
        writer: SqlitePool,
        reader: SqlitePool,
    },
}

/// Whether a statement only reads (and may go to an SQLite read connection).
fn reads_only(text: &str) -> bool {
    text.trim_start()
        .get(..6)
        .is_some_and(|w| w.eq_ignore_ascii_case("select"))
}

/// A service's database: a connection pool and the signal that wakes its outbox relay.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    outbox_written: Arc<Notify>,
}

/// Where a service's database lives. Its `Debug` hides the URL's password.
#[derive(Clone)]
pub enum DbLocation {
    /// A PostgreSQL database; created on the server if it does not exist yet.
    Postgres { url: String, max_connections: u32 },
    /// An SQLite file, created with its folder if missing.
    Sqlite { path: std::path::PathBuf },
}

impl std::fmt::Debug for DbLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbLocation::Postgres {
                url,
                max_connections,
            } => f
                .debug_struct("Postgres")
                .field("url", &crate::redact::url(url))
                .field("max_connections", max_connections)
                .finish(),
            DbLocation::Sqlite { path } => f.debug_struct("Sqlite").field("path", path).finish(),
        }
    }
}

impl Db {
    /// Opens (and if needed creates) the database.
    pub async fn connect(location: &DbLocation) -> DbResult<Db> {
        let pool = match location {
            DbLocation::Postgres {
                url,
                max_connections,
            } => {
                let options = PgConnectOptions::from_str(url)?;
                create_pg_database_if_missing(&options).await?;
                let pool = PgPoolOptions::new()
                    .max_connections(*max_connections)
                    .min_connections(1)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options)
                    .await?;
                Pool::Pg(pool)
            }
            DbLocation::Sqlite { path } => {
                sqlite::configure_library();
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| DbError::Sqlx(sqlx::Error::Io(e)))?;
                }
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true);
                let writer = SqlitePoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .connect_with(options.clone())
                    .await?;
                let reader = SqlitePoolOptions::new()
                    .max_connections(4)
                    .min_connections(1)
                    .after_connect(|conn, _| Box::pin(sqlite::small_lookaside(conn)))
                    .connect_with(options)
                    .await?;
                Pool::Sqlite { writer, reader }
            }
        };
        Ok(Db {
            pool,
            outbox_written: Arc::new(Notify::new()),
        })
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Pg(_) => Backend::Postgres,
            Pool::Sqlite { .. } => Backend::Sqlite,
        }
    }

    /// `FOR UPDATE SKIP LOCKED` where the backend has row locks; SQLite has one writer at a time
    /// and needs none.
    pub fn skip_locked(&self) -> &'static str {
        match self.pool {
            Pool::Pg(_) => " FOR UPDATE SKIP LOCKED",
            Pool::Sqlite { .. } => "",
        }
    }

    /// `FOR UPDATE` where the backend has row locks; in SQLite the transaction already holds the
    /// database's write lock.
    pub fn for_update(&self) -> &'static str {
        match self.pool {
            Pool::Pg(_) => " FOR UPDATE",
            Pool::Sqlite { .. } => "",
        }
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`),
    /// so two transactions never deadlock upgrading a read lock.
    pub async fn begin(&self) -> DbResult<Tx> {
        let inner = match &self.pool {
            Pool::Pg(p) => TxInner::Pg(p.begin().await?),
            Pool::Sqlite { writer, .. } => {
                TxInner::Sqlite(writer.begin_with("BEGIN IMMEDIATE").await?)
            }
        };
        Ok(Tx {
            inner,
            wrote_outbox: false,
            outbox_written: self.outbox_written.clone(),
        })
    }

    /// Answers whether the database takes queries.
    pub async fn ping(&self) -> DbResult<()> {
        sql("SELECT 1").execute(self).await.map(|_| ())
    }

    /// Resolves when a committed transaction wrote to the outbox.
    pub(crate) async fn outbox_written(&self) {
        self.outbox_written.notified().await
    }

    /// Gives the space of `table`'s deleted and outdated rows back for new rows: PostgreSQL's
    /// `VACUUM`, which a table churned by inserts and deletes needs to stay small whether or not
    /// the server's autovacuum runs (and reaches it in time). A table another vacuum is working
    /// on is left to it. SQLite reuses freed pages by itself.
    pub async fn vacuum(&self, table: &str) -> DbResult<()> {
        if let Pool::Pg(pool) = &self.pool {
            let quoted = format!("\"{}\"", table.replace('"', "\"\""));
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "VACUUM (SKIP_LOCKED) {quoted}"
            )))
            .execute(pool)
            .await?;
        }
        Ok(())
    }

    /// Runs SQL that may hold several statements (migrations).
    pub(crate) async fn run_script(&self, tx: &mut Tx, script: &str) -> Result<(), sqlx::Error> {
        match &mut tx.inner {
            TxInner::Pg(t) => sqlx::raw_sql(sqlx::AssertSqlSafe(script.to_owned()))
                .execute(&mut **t)
                .await
                .map(|_| ()),
            TxInner::Sqlite(t) => sqlx::raw_sql(sqlx::AssertSqlSafe(script.to_owned()))
                .execute(&mut **t)
                .await
                .map(|_| ()),
        }
    }

    /// Holds a PostgreSQL advisory lock for the life of `tx`, so that replicas starting at once
    /// migrate one after the other. SQLite's write lock already does this.
    pub(crate) async fn lock_for_migrations(&self, tx: &mut Tx) -> DbResult<()> {
        if let TxInner::Pg(_) = tx.inner {
            sql("SELECT pg_advisory_xact_lock(4242424242)")
                .execute(tx)
                .await?;
        }
        Ok(())
    }

    pub async fn close(&self) {
        match &self.pool {
            Pool::Pg(p) => p.close().await,
            Pool::Sqlite { writer, reader } => {
                writer.close().await;
                reader.close().await;
            }
        }
    }
}

async fn create_pg_database_if_missing(options: &PgConnectOptions) -> DbResult<()> {
    let Some(name) = options.get_database().map(str::to_owned) else {
        return Ok(());
    };
    let admin = options.clone().database("postgres");
    let mut conn = sqlx::PgConnection::connect_with(&admin).await?;
    let exists: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_optional(&mut conn)
        .await?;
    if exists.is_none() {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        match sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {quoted}")))
            .execute(&mut conn)
            .await
        {
            Ok(_) => tracing::info!(database = %name, "created database"),
            // Another replica created it at the same moment.
            Err(sqlx::Error::Database(e))
                if matches!(e.code().as_deref(), Some("42P04" | "23505")) => {}
            Err(e) => return Err(e.into()),
        }
    }
    conn.close().await.ok();
    Ok(())
}

enum TxInner {
    Pg(sqlx::Transaction<'static, Postgres>),
    Sqlite(sqlx::Transaction<'static, Sqlite>),
}

/// A database transaction. Committing one that wrote outbox rows wakes the relay.
pub struct Tx {
    inner: TxInner,
    wrote_outbox: bool,
    outbox_written: Arc<Notify>,
}

impl Tx {
    /// `FOR SHARE` where the backend has row locks: the rows read stay as read until the
    /// transaction ends (a concurrent change waits for it). SQLite's write transaction already
    /// excludes every other writer.
    pub fn for_share(&self) -> &'static str {
        match self.inner {
            TxInner::Pg(_) => " FOR SHARE",
            TxInner::Sqlite(_) => "",
        }
    }

    /// Whether this is a PostgreSQL transaction (else SQLite), for the few statements the two
    /// write differently.
    pub fn is_postgres(&self) -> bool {
        matches!(self.inner, TxInner::Pg(_))
    }

    pub async fn commit(self) -> DbResult<()> {
        match self.inner {
            TxInner::Pg(t) => t.commit().await?,
            TxInner::Sqlite(t) => t.commit().await?,
        }
        if self.wrote_outbox {
            self.outbox_written.notify_one();
        }
        Ok(())
    }

    pub async fn rollback(self) -> DbResult<()> {
        match self.inner {
            TxInner::Pg(t) => t.rollback().await?,
            TxInner::Sqlite(t) => t.rollback().await?,
        }
        Ok(())
    }

    pub(crate) fn mark_outbox_written(&mut self) {
        self.wrote_outbox = true;
    }
}

/// The folder and file name of an embedded service database.
pub fn sqlite_path(data_dir: &Path, service: &str) -> std::path::PathBuf {
    data_dir.join(format!("{service}.db"))
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    /// Many rows in, through every chunk size; repeats skipped; all read back by key.
    async fn multi_row_statements(db: &Db) {
        let mut tx = db.begin().await.unwrap();
        sql("CREATE TABLE multi (k BLOB PRIMARY KEY, n BIGINT NOT NULL)")
            .execute(&mut tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let keys: Vec<Uuid> = (0..127).map(|_| Uuid::now_v7()).collect();
        let rows = |keys: &[Uuid]| {
            keys.iter()
                .enumerate()
                .map(|(i, k)| vec![Arg::from(*k), Arg::from(i as i64)])
                .collect::<Vec<_>>()
        };
        let (head, tail) = (
            "INSERT INTO multi (k, n)",
            "ON CONFLICT DO NOTHING RETURNING k",
        );
        let mut tx = db.begin().await.unwrap();
        let first = for_rows(&mut tx, head, tail, rows(&keys[..100]))
            .await
            .unwrap();
        assert_eq!(first.len(), 100);
        // 90 of these are in already.
        let second = for_rows(&mut tx, head, tail, rows(&keys[10..]))
            .await
            .unwrap();
        let mut new: Vec<Uuid> = second.iter().map(|r| r.get("k").unwrap()).collect();
        new.sort();
        assert_eq!(new, keys[100..].to_vec());
        let read = for_keys(
            &mut tx,
            "SELECT k, n FROM multi WHERE n >= $1 AND k IN",
            "",
            vec![Arg::from(0i64)],
            keys.iter().copied(),
        )
        .await
        .unwrap();
        assert_eq!(read.len(), keys.len());
        tx.commit().await.unwrap();
    }

    #[tokio::test]
    async fn multi_row_statements_on_sqlite() {
        let t = crate::testing::Throwaway::sqlite().await;
        multi_row_statements(&t.db).await;
        t.drop_now().await;
    }

    #[tokio::test]
    async fn multi_row_statements_on_postgres() {
        let t = crate::testing::Throwaway::postgres().await;
        // PostgreSQL has no BLOB; the same table with its own type names.
        sql("CREATE DOMAIN blob AS uuid")
            .execute(&t.db)
            .await
            .unwrap();
        multi_row_statements(&t.db).await;
        t.drop_now().await;
    }
}
