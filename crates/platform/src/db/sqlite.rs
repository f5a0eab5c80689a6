//! What an SQLite connection holds while it waits. `kassa up` opens a writer and a reader or
//! more for each service's database, so a few dozen connections live in one process, and what
//! each keeps at rest is multiplied by that (docs/benchmarks.md, "SQLite's connections at rest").

use std::ffi::{c_int, c_void};

use sqlx::{Connection, SqliteConnection};

/// A read connection's lookaside: slot size and count. SQLite gives every connection 48 KB of
/// lookaside by default (`1200,40`), and writes to every slot of it as the connection opens, so
/// all of it is resident from the start. A read connection runs cached statements; 64 slots of
/// 128 bytes serve their small allocations.
const READER_LOOKASIDE: (c_int, c_int) = (128, 64);

/// Settings of the SQLite library itself, made once before the process opens its first
/// connection (SQLite accepts them only before it initialises).
///
/// Memory statistics off: with them on (SQLite's default), every allocation of every
/// connection takes one process-wide mutex to count itself, and kassa reads no such count.
/// SQLite's own list of recommended options turns them off for speed.
pub(super) fn configure_library() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: called once, before this process opens an SQLite connection (every one is
        // opened by `Db::connect`, which calls this first); SQLITE_CONFIG_MEMSTATUS takes one int.
        let rc = unsafe {
            libsqlite3_sys::sqlite3_config(libsqlite3_sys::SQLITE_CONFIG_MEMSTATUS, 0 as c_int)
        };
        if rc != libsqlite3_sys::SQLITE_OK {
            tracing::debug!(
                rc,
                "SQLite was initialised already; memory statistics stay on"
            );
        }
    });
}

/// Gives a newly opened read connection a small lookaside ([`READER_LOOKASIDE`]). SQLite
/// changes a connection's lookaside only while none of it is in use, and the statements sqlx
/// ran to open the connection (its pragmas) are cached and hold some, so they go first.
pub(super) async fn small_lookaside(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    conn.clear_cached_statements().await?;
    let (size, count) = READER_LOOKASIDE;
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    // SAFETY: `db` is an open connection, held by this handle's lock for the call;
    // SQLITE_DBCONFIG_LOOKASIDE takes a buffer (null: SQLite allocates it), a slot size and a
    // slot count.
    let rc = unsafe {
        libsqlite3_sys::sqlite3_db_config(
            db,
            libsqlite3_sys::SQLITE_DBCONFIG_LOOKASIDE,
            std::ptr::null_mut::<c_void>(),
            size,
            count,
        )
    };
    if rc != libsqlite3_sys::SQLITE_OK {
        // SQLITE_BUSY: some lookaside still in use. The connection works as it is, with more
        // memory; nothing to fail for.
        tracing::warn!(rc, "an SQLite read connection keeps its default lookaside");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Pool;

    /// The most lookaside slots a connection has had in use at once.
    async fn lookaside_high_water(conn: &mut SqliteConnection) -> c_int {
        let mut handle = conn.lock_handle().await.unwrap();
        let db = handle.as_raw_handle().as_ptr();
        let (mut current, mut highest) = (0, 0);
        // SAFETY: `db` is open and locked by the handle; the two out-pointers live past the call.
        let rc = unsafe {
            libsqlite3_sys::sqlite3_db_status(
                db,
                libsqlite3_sys::SQLITE_DBSTATUS_LOOKASIDE_USED,
                &mut current,
                &mut highest,
                0,
            )
        };
        assert_eq!(rc, libsqlite3_sys::SQLITE_OK);
        highest
    }

    /// Runs `SELECT 1 + 1 + … ` (300 terms) on a connection of `pool`, prepared once and not
    /// cached, so its expression tree is parsed into lookaside; returns the most slots in use.
    async fn high_water_of_a_long_sum(pool: &sqlx::SqlitePool) -> c_int {
        let text = format!("SELECT {}", vec!["1"; 300].join(" + "));
        let mut conn = pool.acquire().await.unwrap();
        let (sum,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(text))
            .persistent(false)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(sum, 300);
        lookaside_high_water(&mut conn).await
    }

    /// The sum's 300 terms would fill SQLite's default 123 slots; a read connection has 64.
    #[tokio::test]
    async fn read_connections_have_a_small_lookaside_and_use_it() {
        let t = crate::testing::Throwaway::sqlite().await;
        let Pool::Sqlite { reader, writer } = &t.db.pool else {
            unreachable!("a throwaway SQLite database")
        };
        let reader_high = high_water_of_a_long_sum(reader).await;
        assert!(
            (1..=READER_LOOKASIDE.1).contains(&reader_high),
            "a read connection used {reader_high} lookaside slots at once"
        );
        // The writer keeps SQLite's default, and the same statement uses more of it.
        let writer_high = high_water_of_a_long_sum(writer).await;
        assert!(
            writer_high > READER_LOOKASIDE.1,
            "the writer used {writer_high}"
        );
        t.drop_now().await;
    }
}
