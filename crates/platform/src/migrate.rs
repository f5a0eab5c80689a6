//! Schema migrations: each component (the platform's own tables, then each service's) keeps an
//! ordered list of scripts, one per backend, applied once each and recorded in `kassa_migrations`.

use chrono::Utc;

use crate::db::{Backend, Db, DbError, DbResult, sql};

/// One schema change, written for both backends.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub postgres: &'static str,
    pub sqlite: &'static str,
}

/// The migrations of one component, in version order.
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    pub component: &'static str,
    pub steps: &'static [Migration],
}

/// The migrations of a service crate, each script read from `migrations/postgres/<file>.sql` and
/// `migrations/sqlite/<file>.sql` in the crate:
/// `kassa_platform::migrations!(NAME, [1 "0001_orders", 2 "0002_items"])`.
#[macro_export]
macro_rules! migrations {
    ($component:expr, [$($version:literal $file:literal),+ $(,)?]) => {
        $crate::migrate::Migrations {
            component: $component,
            steps: &[$($crate::migrate::Migration {
                version: $version,
                name: $file,
                postgres: include_str!(concat!(
                    env!("CARGO_MANIFEST_DIR"), "/migrations/postgres/", $file, ".sql"
                )),
                sqlite: include_str!(concat!(
                    env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite/", $file, ".sql"
                )),
            }),+],
        }
    };
}

/// The tables every service database has: outbox, inbox (and kept events), dead letters,
/// idempotency keys, known records.
pub const PLATFORM: Migrations = Migrations {
    component: "platform",
    steps: &[
        Migration {
            version: 1,
            name: "messaging and idempotency",
            postgres: include_str!("migrations/postgres/0001_messaging.sql"),
            sqlite: include_str!("migrations/sqlite/0001_messaging.sql"),
        },
        Migration {
            version: 2,
            name: "cursor relay, retention indexes",
            postgres: include_str!("migrations/postgres/0002_relay_and_retention.sql"),
            sqlite: include_str!("migrations/sqlite/0002_relay_and_retention.sql"),
        },
        Migration {
            version: 3,
            name: "known records of other services",
            postgres: include_str!("migrations/postgres/0003_known_records.sql"),
            sqlite: include_str!("migrations/sqlite/0003_known_records.sql"),
        },
        Migration {
            version: 4,
            name: "events kept by consumers that replay them",
            postgres: include_str!("migrations/postgres/0004_kept_events.sql"),
            sqlite: include_str!("migrations/sqlite/0004_kept_events.sql"),
        },
    ],
};

const LEDGER_PG: &str = "CREATE TABLE IF NOT EXISTS kassa_migrations (
    component TEXT NOT NULL, version BIGINT NOT NULL, name TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (component, version))";
const LEDGER_SQLITE: &str = "CREATE TABLE IF NOT EXISTS kassa_migrations (
    component TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL,
    applied_at TEXT NOT NULL, PRIMARY KEY (component, version))";

/// Applies every migration of `sets` not applied yet, and returns how many it applied.
pub async fn run(db: &Db, sets: &[&Migrations]) -> DbResult<usize> {
    let mut tx = db.begin().await?;
    db.lock_for_migrations(&mut tx).await?;
    let ledger = match db.backend() {
        Backend::Postgres => LEDGER_PG,
        Backend::Sqlite => LEDGER_SQLITE,
    };
    sql(ledger).execute(&mut tx).await?;
    let mut applied = 0;
    for set in sets {
        for step in set.steps {
            let done =
                sql("SELECT version FROM kassa_migrations WHERE component = $1 AND version = $2")
                    .bind(set.component)
                    .bind(step.version)
                    .fetch_optional(&mut tx)
                    .await?;
            if done.is_some() {
                continue;
            }
            let script = match db.backend() {
                Backend::Postgres => step.postgres,
                Backend::Sqlite => step.sqlite,
            };
            db.run_script(&mut tx, script)
                .await
                .map_err(|source| DbError::Migration {
                    component: set.component.into(),
                    version: step.version,
                    source,
                })?;
            sql("INSERT INTO kassa_migrations (component, version, name, applied_at) VALUES ($1, $2, $3, $4)")
                .bind(set.component)
                .bind(step.version)
                .bind(step.name)
                .bind(Utc::now())
                .execute(&mut tx)
                .await?;
            tracing::info!(
                component = set.component,
                version = step.version,
                name = step.name,
                "applied migration"
            );
            applied += 1;
        }
    }
    tx.commit().await?;
    Ok(applied)
}
