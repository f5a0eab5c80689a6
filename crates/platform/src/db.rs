//! The database port: one handle over PostgreSQL or SQLite, so a service writes each query once.
//!
//! Queries use `$1` placeholders, which both backends accept. Arguments are bound as [`Arg`]s and
//! rows read through [`Row::get`], which only accepts types both drivers can decode. The little
//! that differs between dialects (row locking, how a write transaction starts) lives here.

use std::{path::Path, str::FromStr, sync::Arc, time::Duration};

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::{
    Connection, Decode, Postgres, Sqlite, Type,
    postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow},
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
        SqliteSynchronous,
    },
};
use tokio::sync::Notify;
use uuid::Uuid;

/// A database failure. Constraint violations keep the constraint's name so callers can map them
/// to a 4xx.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database answered with an error, or could not be reached.
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// A unique or foreign-key constraint refused the write.
    #[error("constraint {0} violated")]
    Constraint(String),
    /// A column held something the caller did not expect.
    #[error("column {column}: {message}")]
    Column { column: String, message: String },
    /// A migration could not be applied.
    #[error("migration {component}/{version} failed: {source}")]
    Migration {
        component: String,
        version: i64,
        source: sqlx::Error,
    },
}

impl DbError {
    fn classify(e: sqlx::Error) -> DbError {
        if let sqlx::Error::Database(db) = &e
            && (db.is_unique_violation() || db.is_foreign_key_violation())
        {
            let name = db
                .constraint()
                .map(str::to_owned)
                .unwrap_or_else(|| db.message().to_owned());
            return DbError::Constraint(name);
        }
        DbError::Sqlx(e)
    }

    /// A column that held something its reader cannot accept.
    pub fn column(column: &str, message: impl Into<String>) -> Self {
        DbError::Column {
            column: column.into(),
            message: message.into(),
        }
    }

    /// True when the error says the database could not be reached (or is shutting down, or out
    /// of connections) rather than that it refused a query: waiting and trying again will do.
    pub fn is_unavailable(&self) -> bool {
        match self {
            DbError::Sqlx(
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed,
            ) => true,
            DbError::Sqlx(sqlx::Error::Database(db)) => {
                // SQLSTATE 08 connection exception, 57P0x shutdown, 53 insufficient resources.
                db.code().is_some_and(|c| {
                    c.starts_with("08") || c.starts_with("57P0") || c.starts_with("53")
                })
            }
            _ => false,
        }
    }
}

pub type DbResult<T> = Result<T, DbError>;

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

/// Where a service's database lives.
#[derive(Debug, Clone)]
pub enum DbLocation {
    /// A PostgreSQL database; created on the server if it does not exist yet.
    Postgres { url: String, max_connections: u32 },
    /// An SQLite file, created with its folder if missing.
    Sqlite { path: std::path::PathBuf },
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

/// One bound argument. `None` binds a typed NULL.
#[derive(Debug, Clone)]
pub enum Arg {
    Uuid(Option<Uuid>),
    I64(Option<i64>),
    Text(Option<String>),
    Time(Option<DateTime<Utc>>),
    Bool(Option<bool>),
    Bytes(Option<Vec<u8>>),
}

macro_rules! arg_from {
    ($variant:ident, $t:ty) => {
        impl From<$t> for Arg {
            fn from(v: $t) -> Arg {
                Arg::$variant(Some(v.into()))
            }
        }
        impl From<Option<$t>> for Arg {
            fn from(v: Option<$t>) -> Arg {
                Arg::$variant(v.map(Into::into))
            }
        }
    };
}
arg_from!(Uuid, Uuid);
arg_from!(I64, i64);
arg_from!(I64, i32);
arg_from!(I64, u32);
arg_from!(Text, String);
arg_from!(Text, &str);
arg_from!(Time, DateTime<Utc>);
arg_from!(Bool, bool);
arg_from!(Bytes, Vec<u8>);

impl From<&String> for Arg {
    fn from(v: &String) -> Arg {
        Arg::Text(Some(v.clone()))
    }
}

/// Times are stored in SQLite as fixed-width RFC 3339 text, so that comparing them as text
/// compares them as times.
fn sqlite_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A query text with its arguments, run against a [`Db`] or inside a [`Tx`].
#[derive(Debug, Clone)]
pub struct Query {
    sql: String,
    args: Vec<Arg>,
}

/// Starts a query whose text is written in the code.
pub fn sql(text: &'static str) -> Query {
    Query {
        sql: text.to_owned(),
        args: Vec::new(),
    }
}

/// Starts a query whose text is put together at run time: from constants (column lists, a
/// backend's locking clause, a number of placeholders), never from input. Every value goes in
/// as a bound argument.
pub fn sql_assembled(text: String) -> Query {
    Query {
        sql: text,
        args: Vec::new(),
    }
}

/// Where a query runs.
pub enum Target<'a> {
    Db(&'a Db),
    Tx(&'a mut Tx),
}

impl Target<'_> {
    /// The same place, for one more statement.
    fn reborrow(&mut self) -> Target<'_> {
        match self {
            Target::Db(db) => Target::Db(db),
            Target::Tx(tx) => Target::Tx(tx),
        }
    }
}

impl<'a> From<&'a Db> for Target<'a> {
    fn from(db: &'a Db) -> Self {
        Target::Db(db)
    }
}

impl<'a> From<&'a mut Tx> for Target<'a> {
    fn from(tx: &'a mut Tx) -> Self {
        Target::Tx(tx)
    }
}

macro_rules! bind_all {
    ($q:expr, $args:expr, $time:expr) => {{
        let mut q = $q;
        for a in $args {
            q = match a {
                Arg::Uuid(v) => q.bind(v),
                Arg::I64(v) => q.bind(v),
                Arg::Text(v) => q.bind(v),
                Arg::Time(v) => q.bind(v.map($time)),
                Arg::Bool(v) => q.bind(v),
                Arg::Bytes(v) => q.bind(v),
            };
        }
        q
    }};
}

/// Runs `$op` on whichever backend `$target` is.
macro_rules! dispatch {
    ($self:ident, $target:ident, |$q:ident, $ex:ident| $body:expr, |$pg:ident| $pgmap:expr, |$lite:ident| $litemap:expr) => {{
        let args = $self.args;
        let text = $self.sql;
        match $target.into() {
            Target::Db(db) => match &db.pool {
                Pool::Pg(p) => {
                    let $q = bind_all!(
                        sqlx::query(sqlx::AssertSqlSafe(text.clone())),
                        args,
                        |t: DateTime<Utc>| t
                    );
                    let $ex = p;
                    let $pg = $body.await.map_err(DbError::classify)?;
                    Ok($pgmap)
                }
                Pool::Sqlite { writer, reader } => {
                    let p = if reads_only(&text) { reader } else { writer };
                    let $q = bind_all!(
                        sqlx::query(sqlx::AssertSqlSafe(text.clone())),
                        args,
                        sqlite_time
                    );
                    let $ex = p;
                    let $lite = $body.await.map_err(DbError::classify)?;
                    Ok($litemap)
                }
            },
            Target::Tx(tx) => match &mut tx.inner {
                TxInner::Pg(t) => {
                    let $q = bind_all!(
                        sqlx::query(sqlx::AssertSqlSafe(text.clone())),
                        args,
                        |t: DateTime<Utc>| t
                    );
                    let $ex = &mut **t;
                    let $pg = $body.await.map_err(DbError::classify)?;
                    Ok($pgmap)
                }
                TxInner::Sqlite(t) => {
                    let $q = bind_all!(
                        sqlx::query(sqlx::AssertSqlSafe(text.clone())),
                        args,
                        sqlite_time
                    );
                    let $ex = &mut **t;
                    let $lite = $body.await.map_err(DbError::classify)?;
                    Ok($litemap)
                }
            },
        }
    }};
}

impl Query {
    pub fn bind(mut self, arg: impl Into<Arg>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Runs the statement and returns the number of rows it changed.
    pub async fn execute<'a>(self, target: impl Into<Target<'a>>) -> DbResult<u64> {
        dispatch!(
            self,
            target,
            |q, ex| q.execute(ex),
            |r| r.rows_affected(),
            |r| r.rows_affected()
        )
    }

    pub async fn fetch_all<'a>(self, target: impl Into<Target<'a>>) -> DbResult<Vec<Row>> {
        dispatch!(
            self,
            target,
            |q, ex| q.fetch_all(ex),
            |rows| rows.into_iter().map(Row::Pg).collect(),
            |rows| rows.into_iter().map(Row::Sqlite).collect()
        )
    }

    pub async fn fetch_optional<'a>(self, target: impl Into<Target<'a>>) -> DbResult<Option<Row>> {
        dispatch!(
            self,
            target,
            |q, ex| q.fetch_optional(ex),
            |r| r.map(Row::Pg),
            |r| r.map(Row::Sqlite)
        )
    }

    pub async fn fetch_one<'a>(self, target: impl Into<Target<'a>>) -> DbResult<Row> {
        dispatch!(self, target, |q, ex| q.fetch_one(ex), |r| Row::Pg(r), |r| {
            Row::Sqlite(r)
        })
    }
}

/// The most rows one multi-row statement carries.
const MAX_ROWS_PER_STATEMENT: usize = 64;
/// The most keys one `IN (…)` list carries.
const MAX_KEYS_PER_STATEMENT: usize = 512;

/// Splits `n` rows into chunks whose sizes are powers of two (largest first, at most `max`, a
/// power of two), so a multi-row statement has one of a few texts and the driver prepares each
/// once instead of a new text for every batch size.
fn chunk_sizes(mut n: usize, max: usize) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if n == 0 {
            return None;
        }
        let size = if n >= max { max } else { 1 << n.ilog2() };
        n -= size;
        Some(size)
    })
}

/// Writes many rows with few statements: `{head} VALUES ($1, …), (…) {tail}` for each chunk of
/// `rows` (every row binds the same number of arguments), inside `tx`: a multi-row `INSERT`, or
/// an `UPDATE` that reads its rows from a `WITH` list. Returns what the statements' `RETURNING`
/// clauses gave, in no particular order.
pub async fn for_rows(
    tx: &mut Tx,
    head: &str,
    tail: &str,
    rows: Vec<Vec<Arg>>,
) -> DbResult<Vec<Row>> {
    let Some(width) = rows.first().map(Vec::len) else {
        return Ok(Vec::new());
    };
    debug_assert!(rows.iter().all(|r| r.len() == width));
    let mut rows = rows.into_iter();
    let mut returned = Vec::new();
    for size in chunk_sizes(rows.len(), MAX_ROWS_PER_STATEMENT) {
        let values = (0..size)
            .map(|r| {
                let cells = (1..=width)
                    .map(|c| format!("${}", r * width + c))
                    .collect::<Vec<_>>();
                format!("({})", cells.join(", "))
            })
            .collect::<Vec<_>>();
        let mut q = sql_assembled(format!("{head} VALUES {} {tail}", values.join(", ")));
        for row in rows.by_ref().take(size) {
            q.args.extend(row);
        }
        returned.extend(q.fetch_all(&mut *tx).await?);
    }
    Ok(returned)
}

/// Runs `{head} ($k, $k+1, …){tail}` for chunks of `keys`, where `first` arguments come before
/// the list and are bound again for each chunk: a read or an update of many rows by key with a
/// few statements. Returns every row the statements return.
pub async fn for_keys<'a>(
    target: impl Into<Target<'a>>,
    head: &str,
    tail: &str,
    first: Vec<Arg>,
    keys: impl IntoIterator<Item = impl Into<Arg>>,
) -> DbResult<Vec<Row>> {
    let mut target = target.into();
    let keys: Vec<Arg> = keys.into_iter().map(Into::into).collect();
    let mut keys = keys.into_iter();
    let mut returned = Vec::new();
    for size in chunk_sizes(keys.len(), MAX_KEYS_PER_STATEMENT) {
        let list = (1..=size)
            .map(|i| format!("${}", first.len() + i))
            .collect::<Vec<_>>();
        let mut q = sql_assembled(format!("{head} ({}){tail}", list.join(", ")));
        q.args.extend(first.iter().cloned());
        q.args.extend(keys.by_ref().take(size));
        returned.extend(q.fetch_all(target.reborrow()).await?);
    }
    Ok(returned)
}

/// One result row from either backend.
pub enum Row {
    Pg(PgRow),
    Sqlite(SqliteRow),
}

/// A value both drivers can read.
pub trait Column:
    for<'r> Decode<'r, Postgres> + Type<Postgres> + for<'r> Decode<'r, Sqlite> + Type<Sqlite>
{
}
impl<T> Column for T where
    T: for<'r> Decode<'r, Postgres> + Type<Postgres> + for<'r> Decode<'r, Sqlite> + Type<Sqlite>
{
}

impl Row {
    /// A column holding the text form of a type (a status, a currency code).
    pub fn parsed<T>(&self, column: &str) -> DbResult<T>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        let text: String = self.get(column)?;
        text.parse()
            .map_err(|e: T::Err| DbError::column(column, e.to_string()))
    }

    /// An amount stored as minor units in one column and its currency code in another.
    pub fn money(
        &self,
        minor_column: &str,
        currency_column: &str,
    ) -> DbResult<kassa_contracts::Money> {
        let currency: kassa_contracts::Currency = self.parsed(currency_column)?;
        kassa_contracts::Money::from_minor(self.get(minor_column)?, currency)
            .map_err(|e| DbError::column(minor_column, e.to_string()))
    }

    pub fn get<T: Column>(&self, column: &str) -> DbResult<T> {
        use sqlx::Row as _;
        let result = match self {
            Row::Pg(r) => r.try_get(column),
            Row::Sqlite(r) => r.try_get(column),
        };
        result.map_err(|e| DbError::Column {
            column: column.into(),
            message: e.to_string(),
        })
    }
}

/// The folder and file name of an embedded service database.
pub fn sqlite_path(data_dir: &Path, service: &str) -> std::path::PathBuf {
    data_dir.join(format!("{service}.db"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_powers_of_two_largest_first() {
        let sizes = |n| chunk_sizes(n, 64).collect::<Vec<_>>();
        assert_eq!(sizes(0), Vec::<usize>::new());
        assert_eq!(sizes(1), vec![1]);
        assert_eq!(sizes(37), vec![32, 4, 1]);
        assert_eq!(sizes(64), vec![64]);
        assert_eq!(sizes(200), vec![64, 64, 64, 8]);
        for n in 0..300 {
            assert_eq!(chunk_sizes(n, 64).sum::<usize>(), n);
            assert!(chunk_sizes(n, 512).all(|size| size.is_power_of_two() && size <= 512));
        }
    }

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
        let path = std::env::temp_dir().join(format!("kassa-db-{}.db", Uuid::now_v7()));
        let db = Db::connect(&DbLocation::Sqlite { path: path.clone() })
            .await
            .unwrap();
        multi_row_statements(&db).await;
        db.close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    #[tokio::test]
    async fn multi_row_statements_on_postgres() {
        let name = format!("kassa_db_test_{}", Uuid::now_v7().simple());
        let server = "postgres://postgres@127.0.0.1:5432";
        let db = Db::connect(&DbLocation::Postgres {
            url: format!("{server}/{name}"),
            max_connections: 2,
        })
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 (.ci/run starts it)");
        // PostgreSQL has no BLOB; the same table with its own type names.
        sql("CREATE DOMAIN blob AS uuid")
            .execute(&db)
            .await
            .unwrap();
        multi_row_statements(&db).await;
        db.close().await;
        let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
            .await
            .unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
    }
}
