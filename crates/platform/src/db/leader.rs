//! One process at a time does a job for a database (its outbox relay): on PostgreSQL the one
//! holding a session advisory lock on a connection of its own. The lock goes with the connection,
//! so a process that dies (even `kill -9`) hands the job over as soon as the server notices the
//! connection closed, and there is no lease to renew or wait out. An SQLite file belongs to one
//! process, which always leads.

use sqlx::{Connection, PgConnection};

use super::{Db, DbResult, Pool};

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
        let mut conn = PgConnection::connect_with(&pool.connect_options()).await?;
        let (won,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
            .bind(job)
            .fetch_one(&mut conn)
            .await?;
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
            Some(conn) => conn.ping().await.is_ok(),
        }
    }

    /// Gives the job up at once (closing the connection releases the lock).
    pub async fn resign(mut self) {
        if let Some(conn) = self.conn.take() {
            conn.close().await.ok();
        }
    }
}
