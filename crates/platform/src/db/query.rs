//! One query text for both backends: arguments bound as [`Arg`]s, run on a pool or in a
//! transaction ([`Target`]), rows read through [`Row::get`], which only accepts types both
//! drivers decode.

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::{Decode, Postgres, Sqlite, Type, postgres::PgRow, sqlite::SqliteRow};
use uuid::Uuid;

use super::{Db, DbError, DbResult, Pool, Tx, TxInner, reads_only};

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
    pub(super) args: Vec<Arg>,
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
    pub(super) fn reborrow(&mut self) -> Target<'_> {
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
