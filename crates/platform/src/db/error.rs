//! Database failures, and which of them mean "unreachable, try again later".

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
    pub(super) fn classify(e: sqlx::Error) -> DbError {
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
