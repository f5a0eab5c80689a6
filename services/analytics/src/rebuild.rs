//! The read models made again from scratch, from the events analytics stored as they came: for
//! when a report changes shape (a new sum, a fixed rule) and the figures must follow.
//!
//! It runs in one transaction, so the reports show the old figures until the new ones are
//! whole, and events that arrive meanwhile wait for it and then move the new figures.

use kassa_contracts::Envelope;
use kassa_platform::{
    bus::HandlerError,
    db::{Db, sql, sql_assembled},
    service::{BuildError, Task, TaskInput},
};

use crate::facts;

/// `kassa analytics rebuild`.
pub const TASK: Task = Task {
    name: "rebuild",
    help: "Empty the report tables and make them again from every event analytics stored",
    run: |input| Box::pin(async move { run(input).await }),
};

/// Events read and applied at a time.
const CHUNK: i64 = 1000;

/// What a rebuild did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rebuilt {
    pub events: u64,
    /// Stored events that can no longer be read (kept, and left out of the figures).
    pub unreadable: u64,
}

async fn run(input: TaskInput) -> Result<String, BuildError> {
    let r = rebuild(&input.db)
        .await
        .map_err(|e| BuildError::Start(e.to_string()))?;
    Ok(format!(
        "analytics: read models rebuilt from {} event(s){}",
        r.events,
        if r.unreadable > 0 {
            format!(", {} unreadable left out", r.unreadable)
        } else {
            String::new()
        }
    ))
}

pub async fn rebuild(db: &Db) -> Result<Rebuilt, HandlerError> {
    let mut tx = db.begin().await?;
    if tx.is_postgres() {
        // Consumers wait while the figures are made again, rather than move the old ones.
        sql("LOCK TABLE order_facts IN EXCLUSIVE MODE")
            .execute(&mut tx)
            .await?;
    }
    for table in facts::TABLES {
        sql_assembled(format!("DELETE FROM {table}"))
            .execute(&mut tx)
            .await?;
    }
    let mut done = Rebuilt {
        events: 0,
        unreadable: 0,
    };
    let mut after = 0_i64;
    loop {
        let rows =
            sql("SELECT seq, envelope FROM stored_events WHERE seq > $1 ORDER BY seq LIMIT $2")
                .bind(after)
                .bind(CHUNK)
                .fetch_all(&mut tx)
                .await?;
        let Some(last) = rows.last() else { break };
        after = last.get("seq")?;
        let mut envelopes: Vec<Envelope> = Vec::with_capacity(rows.len());
        for row in &rows {
            let text: String = row.get("envelope")?;
            match serde_json::from_str(&text) {
                Ok(e) => envelopes.push(e),
                Err(_) => done.unreadable += 1,
            }
        }
        let mut read = Vec::with_capacity(envelopes.len());
        for e in &envelopes {
            match facts::read(e) {
                Ok(fact) => read.push((fact, e.time, e.event_type.as_str())),
                Err(error) => {
                    tracing::warn!(event = %e.id, %error, "a stored event can no longer be read");
                    done.unreadable += 1;
                }
            }
        }
        done.events += read.len() as u64;
        facts::project(&mut tx, read, false).await?;
    }
    // A ClickHouse sink that has run here gets every order again.
    let sinks = sql("SELECT name FROM sink_state")
        .fetch_all(&mut tx)
        .await?;
    if !sinks.is_empty() {
        sql("DELETE FROM sink_queue").execute(&mut tx).await?;
        crate::clickhouse::queue_all(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(done)
}
