//! The analytics service of seed 002: live reports and a dashboard, built from the events every
//! other service publishes (never from their tables), so a report is seconds behind the till.
//! Every event is kept as it came (the platform's kept events, which are also its inbox), and
//! the read models can be made again from them (`kassa analytics rebuild`) when a report
//! changes shape.
//!
//! - `facts.rs`: what events say about orders, and the quarter-hour sums they move
//! - `period.rs`: local days in the shop's time zone, as slots, hours, days and weeks
//! - `reports.rs`: the reports' queries
//! - `api.rs`: the seed's report routes
//! - `dashboard.rs`: the page at `/dashboard`, its charts drawn here as SVG
//! - `rebuild.rs`: the read models made again from the kept events
//! - `clickhouse.rs`: the same facts copied to ClickHouse, and the reports read there

pub mod api;
pub mod clickhouse;
pub mod dashboard;
pub mod facts;
pub mod period;
pub mod rebuild;
pub mod reports;

use async_trait::async_trait;
use chrono_tz::Tz;
use kassa_contracts::Envelope;
use kassa_platform::{
    bus::{Batching, HandlerError},
    consumer::{Applied, Apply, Fresh, Inboxed},
    db::Tx,
    migrate::Migrations,
    service::{BuildError, Infra, Service, ServiceParts, Setting},
};
use utoipa::OpenApi;

pub const NAME: &str = "analytics";

pub const MIGRATIONS: Migrations = kassa_platform::migrations!(
    NAME,
    [1 "0001_analytics", 2 "0002_clickhouse_sink", 3 "0003_kept_events"]
);

/// The shop's time zone: where "today" is, when a report names no zone.
pub const TIME_ZONE: Setting = Setting {
    name: "report-time-zone",
    default: "UTC",
    help: "The IANA time zone of the shop's days in reports and on the dashboard (Asia/Jakarta, …)",
    secret: false,
};

/// Where the order facts are also copied: a ClickHouse server's HTTP interface and database.
pub const CLICKHOUSE_URL: Setting = Setting {
    name: "clickhouse-url",
    default: "",
    help: "Copy the reports' facts to ClickHouse at this URL, http://host:8123/<database> (none when empty)",
    secret: true,
};

/// Where the reports' queries run.
pub const REPORT_STORE: Setting = Setting {
    name: "report-store",
    default: "local",
    help: "Where reports are read: local (the service's own database) or clickhouse (needs --clickhouse-url)",
    secret: false,
};

pub static SERVICE: Service = Service {
    name: NAME,
    default_port: 8000,
    migrations: Some(&MIGRATIONS),
    routes: &["/api/v1/reports", "/dashboard"],
    access: &[api::RULES, dashboard::RULES],
    // Every event of every service.
    consumes: &["#"],
    settings: &[TIME_ZONE, CLICKHOUSE_URL, REPORT_STORE],
    tasks: &[rebuild::TASK],
    openapi: document,
    build,
};

pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = api::ApiDoc::openapi();
    doc.merge(dashboard::ApiDoc::openapi());
    doc
}

/// The configured time zone.
pub fn time_zone(options: &kassa_platform::service::Options) -> Result<Tz, BuildError> {
    let name: String = options.get(&TIME_ZONE)?;
    name.trim()
        .parse()
        .map_err(|_| BuildError::setting(&TIME_ZONE, format!("`{name}` is not an IANA time zone")))
}

fn build(infra: &Infra) -> Result<ServiceParts, BuildError> {
    let db = infra.db()?;
    let url: String = infra.options.get(&CLICKHOUSE_URL)?;
    let clickhouse = match url.trim() {
        "" => None,
        url => Some(
            clickhouse::ClickHouse::new(url)
                .map_err(|e| BuildError::setting(&CLICKHOUSE_URL, e))?,
        ),
    };
    let store: String = infra.options.get(&REPORT_STORE)?;
    let reports_from = match (store.as_str(), &clickhouse) {
        ("local", _) => None,
        ("clickhouse", Some(ch)) => Some(ch.clone()),
        ("clickhouse", None) => {
            return Err(BuildError::setting(
                &REPORT_STORE,
                "reports from ClickHouse need --clickhouse-url",
            ));
        }
        (other, _) => {
            return Err(BuildError::setting(
                &REPORT_STORE,
                format!("`{other}` is neither local nor clickhouse"),
            ));
        }
    };
    let state = api::AppState {
        db: db.clone(),
        zone: time_zone(&infra.options)?,
        clickhouse: reports_from,
    };
    let router = api::router(state.clone()).merge(dashboard::router(state));
    let projection = Projection {
        sink: clickhouse.is_some(),
    };
    let mut parts = ServiceParts::api(router, document).with_handler(Inboxed::new(
        NAME,
        db.clone(),
        projection,
    ));
    if let Some(ch) = clickhouse {
        parts = parts.with_background(clickhouse::sink(db, ch, infra.shutdown.clone()));
    }
    Ok(parts)
}

/// Keeps every event and moves the read models by what it says.
pub struct Projection {
    /// Whether changed orders are queued for the ClickHouse sink.
    pub sink: bool,
}

#[async_trait]
impl Apply for Projection {
    type Event = facts::Fact;
    type AfterCommit = ();

    /// Events taken a second at a time (up to 4,096): each batch costs a dozen statements
    /// whatever its size, and an order changed by several events of a batch is read and written
    /// once. An order's events come from several services, a second or more apart when the
    /// checkout runs at capacity; taken a fifth of a second at a time, as before, most orders
    /// were written once per event (docs/benchmarks.md). Reports lag the till by that second.
    const BATCHING: Batching = Batching {
        max: 4096,
        linger: std::time::Duration::from_millis(1000),
    };

    /// Every event is kept, so the read models can be made again from them.
    const KEEPS_EVENTS: bool = true;

    fn decode(&self, event: &Envelope) -> Result<facts::Fact, HandlerError> {
        facts::read(event)
    }

    async fn apply(
        &self,
        tx: &mut Tx,
        events: Vec<Fresh<'_, facts::Fact>>,
    ) -> Result<Applied<()>, HandlerError> {
        let fresh = events
            .into_iter()
            .map(|f| (f.event, f.envelope.time, f.envelope.event_type.as_str()))
            .collect();
        facts::project(tx, fresh, self.sink).await?;
        Ok(Applied::publish(Vec::new()))
    }
}

// The tests name this crate as a user of it would.
#[cfg(test)]
extern crate self as kassa_analytics;
#[cfg(test)]
mod tests;
