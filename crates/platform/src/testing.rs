//! What the tests of every crate share (feature `testing`, a dev-dependency only): throwaway
//! databases, an SQLite file or a PostgreSQL database on the local server (as `scripts/test` starts
//! it), each dropped by [`Throwaway::drop_now`]; and [`eventually`], which waits for a fact
//! instead of for time.

use std::{
    fmt::Debug,
    time::{Duration, Instant},
};

use sqlx::Connection;
use uuid::Uuid;

use crate::{
    db::{Db, DbLocation},
    migrate::Migrations,
};

/// Observes a value every 10 ms until `done` holds for it, and returns it; fails the test with
/// the last value observed once `within` has passed.
pub async fn eventually<T: Debug>(
    what: &str,
    within: Duration,
    mut observe: impl AsyncFnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        let value = observe().await;
        if done(&value) {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("{what}: not within {within:?}; last observed {value:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs each `async fn name(t: Throwaway)` as two tests, `name::on_sqlite` and
/// `name::on_postgres`, each on a throwaway database of its own.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn on_sqlite() {
                super::$name($crate::testing::Throwaway::sqlite().await).await;
            }

            #[tokio::test]
            async fn on_postgres() {
                super::$name($crate::testing::Throwaway::postgres().await).await;
            }
        }
    )+};
}

const SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// A database made for one test.
pub struct Throwaway {
    pub db: Db,
    location: DbLocation,
}

impl Throwaway {
    pub async fn sqlite() -> Self {
        let path = std::env::temp_dir().join(format!("kassa-test-{}.db", Uuid::now_v7()));
        let location = DbLocation::Sqlite { path };
        let db = Db::connect(&location)
            .await
            .expect("an SQLite file in the temp folder");
        Throwaway { db, location }
    }

    pub async fn postgres() -> Self {
        let name = format!("kassa_test_{}", Uuid::now_v7().simple());
        let location = DbLocation::Postgres {
            url: format!("{SERVER}/{name}"),
            max_connections: 4,
        };
        let db = Db::connect(&location)
            .await
            .expect("PostgreSQL on 127.0.0.1:5432 (scripts/test starts it)");
        Throwaway { db, location }
    }

    /// Closes the database and removes it.
    pub async fn drop_now(self) {
        self.db.close().await;
        match self.location {
            DbLocation::Sqlite { path } => {
                for suffix in ["", "-wal", "-shm"] {
                    // Absent files (no WAL yet) are fine.
                    std::fs::remove_file(format!("{}{suffix}", path.display())).ok();
                }
            }
            DbLocation::Postgres { url, .. } => {
                let name = url.rsplit('/').next().unwrap_or_default().to_owned();
                let mut admin = sqlx::PgConnection::connect(&format!("{SERVER}/postgres"))
                    .await
                    .expect("PostgreSQL admin connection");
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .expect("test database dropped");
            }
        }
    }
}

/// What a route answered: its status, its body as JSON (`Null` when it is not JSON) and its
/// headers.
#[derive(Debug)]
pub struct Answer {
    pub status: axum::http::StatusCode,
    pub json: serde_json::Value,
    pub headers: axum::http::HeaderMap,
}

impl Answer {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends one request to `app` (a JSON body when `body` is `Some`) and reads the whole answer.
pub async fn call(
    app: &axum::Router,
    method: axum::http::Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<serde_json::Value>,
) -> Answer {
    call_text(
        app,
        method,
        uri,
        headers,
        body.map(|b| b.to_string()).as_deref(),
    )
    .await
}

/// [`call`] with a JSON body as it is written, digits and all (a `Value` holds a number as a
/// double).
pub async fn call_text(
    app: &axum::Router,
    method: axum::http::Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Answer {
    use tower::ServiceExt;
    let mut req = axum::http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = match body {
        Some(b) => req
            .header(axum::http::header::CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from(b.to_owned())),
        None => req.body(axum::body::Body::empty()),
    }
    .expect("a well-formed request");
    let res = app.clone().oneshot(req).await.expect("routers do not fail");
    let (parts, body) = res.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .expect("a whole body");
    Answer {
        status: parts.status,
        json: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        headers: parts.headers,
    }
}

/// The events in `db`'s outbox, oldest first: each one's type and data.
pub async fn outbox_events(db: &Db) -> Vec<(String, serde_json::Value)> {
    let rows = crate::db::sql("SELECT topic, body FROM outbox ORDER BY seq")
        .fetch_all(db)
        .await
        .expect("the outbox is readable");
    rows.iter()
        .map(|r| {
            let body: Vec<u8> = r.get("body").expect("an event's body");
            let env = kassa_contracts::Envelope::from_bytes(&body).expect("a stored envelope");
            (r.get("topic").expect("an event's type"), env.data)
        })
        .collect()
}

/// Every row of every table in `db`, as text (binary columns as hex): what a test searches for
/// something that must never be stored.
pub async fn every_row(db: &Db) -> Vec<String> {
    let tables = match db.backend() {
        crate::db::Backend::Postgres => {
            "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public'"
        }
        crate::db::Backend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table'",
    };
    let mut out = Vec::new();
    for row in crate::db::sql(tables).fetch_all(db).await.unwrap() {
        let table: String = row.get("name").unwrap();
        let rows = match db.backend() {
            crate::db::Backend::Postgres => {
                format!("SELECT CAST(t AS TEXT) AS line FROM \"{table}\" t")
            }
            crate::db::Backend::Sqlite => {
                let columns: Vec<String> =
                    crate::sql_assembled(format!("SELECT name FROM pragma_table_info('{table}')"))
                        .fetch_all(db)
                        .await
                        .unwrap()
                        .iter()
                        .map(|c| {
                            format!(
                                "COALESCE(quote(\"{}\"), '')",
                                c.get::<String>("name").unwrap()
                            )
                        })
                        .collect();
                format!(
                    "SELECT {} AS line FROM \"{table}\"",
                    columns.join(" || '|' || ")
                )
            }
        };
        for line in crate::sql_assembled(rows).fetch_all(db).await.unwrap() {
            out.push(line.get::<String>("line").unwrap());
        }
    }
    out
}

/// Whether `text` holds `secret`, as it is or as hex (how binary columns and bodies show).
pub fn mentions(text: &str, secret: &str) -> bool {
    let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
    let text = text.to_ascii_lowercase();
    text.contains(&secret.to_ascii_lowercase()) || text.contains(&hex)
}

/// What `service` is built from in a test of its own crate: its database `db`, an in-memory
/// bus and cache, default settings, no peers. Its background tasks run until the test ends.
pub fn infra(service: &'static crate::service::Service, db: Db) -> crate::service::Infra {
    let (trigger, shutdown) = crate::shutdown::channel();
    // Never asked to stop: the test's runtime ends the tasks.
    std::mem::forget(trigger);
    crate::service::Infra {
        db: Some(db),
        bus: std::sync::Arc::new(crate::bus::memory::MemoryBus::new(
            crate::bus::RetryPolicy::default(),
            shutdown.clone(),
        )),
        cache: std::sync::Arc::new(crate::cache::MemoryCache::new(10_000)),
        shutdown,
        options: crate::service::Options::default(),
        http: crate::http::HttpSettings::default(),
        peers: Vec::new(),
        directory: crate::peer::Directory::default(),
        service,
    }
}

/// Creates the PostgreSQL database `name` on the local server already migrated with
/// `components`, as a copy of a template database that holds exactly those migrations: copying
/// a template is cheaper than creating an empty database and migrating it, for the whole
/// systems the tests start (a dozen databases each). The template is made by the first test that
/// needs it (under an advisory lock, so that concurrent test processes make it once) and named
/// after a digest of the migrations' scripts, so a changed migration makes a new one; older
/// templates of the same components are dropped then.
pub async fn database_from_template(name: &str, components: &[&Migrations]) {
    let digest = migrations_digest(components);
    let family = format!(
        "kassa_template_{}",
        components.last().map(|m| m.component).unwrap_or("empty")
    );
    let template = format!("{family}_{digest:016x}");
    let mut admin = sqlx::PgConnection::connect(&format!("{SERVER}/postgres"))
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 (scripts/test starts it)");
    if !database_exists(&mut admin, &template).await {
        // One maker at a time across every test process; the others wait and find it made.
        let lock = i64::from_be_bytes(digest.to_be_bytes());
        execute(&mut admin, &format!("SELECT pg_advisory_lock({lock})")).await;
        if !database_exists(&mut admin, &template).await {
            make_template(&mut admin, &family, &template, components).await;
        }
        execute(&mut admin, &format!("SELECT pg_advisory_unlock({lock})")).await;
    }
    execute(
        &mut admin,
        &format!(
            "CREATE DATABASE {} TEMPLATE {}",
            quoted(name),
            quoted(&template)
        ),
    )
    .await;
    admin.close().await.ok();
}

async fn database_exists(admin: &mut sqlx::PgConnection, name: &str) -> bool {
    let found: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(admin)
        .await
        .expect("pg_database is readable");
    found.is_some()
}

/// Builds `template` (migrated with `components`) under a name of its own and renames it once
/// it is complete, so a template that exists is whole; drops `family`'s older templates.
async fn make_template(
    admin: &mut sqlx::PgConnection,
    family: &str,
    template: &str,
    components: &[&Migrations],
) {
    let building = format!("{template}_building");
    execute(
        admin,
        &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quoted(&building)),
    )
    .await;
    execute(admin, &format!("CREATE DATABASE {}", quoted(&building))).await;
    let db = Db::connect(&DbLocation::Postgres {
        url: format!("{SERVER}/{building}"),
        max_connections: 1,
    })
    .await
    .expect("the template being built");
    crate::migrate::run(&db, components)
        .await
        .expect("the template's migrations");
    db.close().await;
    let older: Vec<(String,)> = sqlx::query_as(
        "SELECT datname::text FROM pg_database WHERE datname LIKE $1 AND datname <> $2",
    )
    .bind(format!("{}\\_%", family.replace('_', "\\_")))
    .bind(&building)
    .fetch_all(&mut *admin)
    .await
    .expect("pg_database is readable");
    for (old,) in older {
        // Another family's name may start with this one's (`…_orders` and `…_orders_x`): only
        // a digest follows the family in its own templates.
        let rest = &old[family.len() + 1..];
        if rest.len() == 16 && rest.bytes().all(|b| b.is_ascii_hexdigit()) {
            execute(
                admin,
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quoted(&old)),
            )
            .await;
        }
    }
    execute(
        admin,
        &format!(
            "ALTER DATABASE {} RENAME TO {}",
            quoted(&building),
            quoted(template)
        ),
    )
    .await;
    // No one connects to a template: a copy is refused while anyone is connected to it.
    execute(
        admin,
        &format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS false",
            quoted(template)
        ),
    )
    .await;
}

/// A digest of every PostgreSQL script of `components`, in order (FNV-1a: stable across builds
/// and toolchains).
fn migrations_digest(components: &[&Migrations]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for component in components {
        for part in [component.component.as_bytes(), b"\0"] {
            for byte in part {
                hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        for step in component.steps {
            for byte in step
                .version
                .to_be_bytes()
                .iter()
                .chain(step.postgres.as_bytes())
            {
                hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    hash
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

async fn execute(conn: &mut sqlx::PgConnection, statement: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_owned()))
        .execute(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

/// `app` with every request made by a caller of `role` (a router called without the HTTP
/// layer that checks credentials: a service crate's own tests of its routes).
pub fn acting_as(app: axum::Router, role: crate::auth::Role) -> axum::Router {
    let claims = crate::auth::Claims::new(
        uuid::Uuid::now_v7(),
        format!("{}@example.com", role.name()),
        role,
        chrono::Utc::now(),
        chrono::Duration::hours(1),
    );
    app.layer(axum::Extension(crate::auth::Caller::Known(claims)))
}
