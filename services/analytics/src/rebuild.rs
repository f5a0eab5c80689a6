//! The read models made again from scratch, from the events analytics kept as they came, in the
//! order they were made: for when a report changes shape (a new sum, a fixed rule) and the
//! figures must follow.
//!
//! It runs in one transaction, so the reports show the old figures until the new ones are
//! whole, and events that arrive meanwhile wait for it and then move the new figures.

use kassa_contracts::Envelope;
use kassa_platform::{
    bus::HandlerError,
    db::{Db, sql, sql_assembled},
    inbox,
    service::{BuildError, Task, TaskInput},
};

use crate::facts;

/// `kassa analytics rebuild`.
pub const TASK: Task = Task {
    command: ["analytics", "rebuild"],
    args: &[],
    help: "Empty the report tables and make them again from every event analytics kept",
    run: |input| Box::pin(async move { run(input).await }),
};

/// Events read and applied at a time.
const CHUNK: i64 = 1000;

/// What a rebuild did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rebuilt {
    pub events: u64,
    /// Kept events that can no longer be read (left out of the figures, and kept still).
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
    let mut after = None;
    loop {
        let kept = inbox::kept(&mut tx, crate::NAME, after, CHUNK).await?;
        let Some(last) = kept.last() else { break };
        after = Some(last.id);
        let mut envelopes: Vec<Envelope> = Vec::with_capacity(kept.len());
        for k in &kept {
            match k.envelope() {
                Ok(e) => envelopes.push(e),
                Err(_) => done.unreadable += 1,
            }
        }
        let mut read = Vec::with_capacity(envelopes.len());
        for e in &envelopes {
            match facts::read(e) {
                Ok(fact) => read.push((fact, e.time, e.event_type.as_str())),
                Err(error) => {
                    tracing::warn!(event = %e.id, %error, "a kept event can no longer be read");
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
