//! One process at a time does a job for a database (its outbox relay): on PostgreSQL the one
//! holding a session advisory lock on a connection of its own. The lock goes with the connection,
//! so a process that dies (even `kill -9`) hands the job over as soon as the server notices the
//! connection closed, and there is no lease to renew. A leader whose host vanished, or that
//! froze, closes nothing: the server closes its connection once it has said nothing for
//! [`LEADER_IDLE_LIMIT`] (a working leader touches it every second). Session locks need a
//! direct connection: behind a pooler in transaction mode they mean nothing. An SQLite file
//! belongs to one process, which always leads.

use std::time::Duration;

use sqlx::{Connection, PgConnection};

use super::{Db, DbError, DbResult, Pool};

/// How long the server keeps a leader's connection that says nothing (a host that vanished, a
/// process frozen): then it closes it, which releases the lock for another process.
pub const LEADER_IDLE_LIMIT: Duration = Duration::from_secs(30);
/// How long a check of the lock's connection may take before the lead counts as lost.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Held while this process leads; dropping it (or losing its connection) lets another lead.
pub struct Leader {
    conn: Option<PgConnection>,
}

impl Db {
    /// Becomes the leader for `job` if nobody else is; `None` while another process leads.
    pub async fn try_lead(&self, job: i64) -> DbResult<Option<Leader>> {
        let Pool::Pg(pool) = &self.pool else {
            return Ok(Some(Leader { conn: None }));
        };
        let attempt = async {
            let mut conn = PgConnection::connect_with(&pool.connect_options()).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "SET idle_session_timeout = {}",
                LEADER_IDLE_LIMIT.as_millis()
            )))
            .execute(&mut conn)
            .await?;
            let (won,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
                .bind(job)
                .fetch_one(&mut conn)
                .await?;
            Ok::<_, sqlx::Error>((conn, won))
        };
        let (conn, won) = tokio::time::timeout(CHECK_TIMEOUT, attempt)
            .await
            .map_err(|_| DbError::Sqlx(sqlx::Error::PoolTimedOut))??;
        if won {
            Ok(Some(Leader { conn: Some(conn) }))
        } else {
            conn.close().await.ok();
            Ok(None)
        }
    }
}

impl Leader {
    /// Whether this process still leads: its lock's connection still answers.
    pub async fn still_leads(&mut self) -> bool {
        match &mut self.conn {
            None => true,
            Some(conn) => matches!(
                tokio::time::timeout(CHECK_TIMEOUT, conn.ping()).await,
                Ok(Ok(()))
            ),
        }
    }

    /// Gives the job up at once (closing the connection releases the lock).
    pub async fn resign(mut self) {
        if let Some(conn) = self.conn.take() {
            conn.close().await.ok();
        }
    }
}
