//! Leasing due rows to one process: a work table's rows (stalled payments, refunds to retry) are
//! claimed with a lease so replicas never work on one at once, and a row whose process died is
//! claimed again once its lease has run out.

use chrono::{DateTime, Utc};

use super::{Db, DbResult, Row, sql_assembled};

/// Which rows of a table are due and how a claim marks them. In `set` and `due`, `$1` is the
/// lease's end and `$2` the time now.
#[derive(Debug, Clone, Copy)]
pub struct Lease {
    pub table: &'static str,
    pub key: &'static str,
    /// `locked_until = $1`
    pub set: &'static str,
    /// `next_attempt_at <= $2`
    pub due: &'static str,
    /// The order due rows are taken in.
    pub order: &'static str,
    pub returning: &'static str,
}

impl Db {
    /// Leases up to `limit` due rows until `until` and returns them (skipping rows another
    /// replica is claiming right now).
    pub async fn lease(
        &self,
        lease: &Lease,
        until: DateTime<Utc>,
        limit: usize,
    ) -> DbResult<Vec<Row>> {
        let Lease {
            table,
            key,
            set,
            due,
            order,
            returning,
        } = lease;
        sql_assembled(format!(
            "UPDATE {table} SET {set} WHERE {key} IN (
                SELECT {key} FROM {table} WHERE {due} ORDER BY {order} LIMIT $3{})
             RETURNING {returning}",
            self.skip_locked()
        ))
        .bind(until)
        .bind(Utc::now())
        .bind(limit as i64)
        .fetch_all(self)
        .await
    }
}
