//! The inventory service of seed 002: each product's stock, every movement of it, and what
//! orders hold. An order's items are reserved when it is placed (all or none, never beyond the
//! units available), kept once it is paid, sold when it completes, and given back when it
//! fails, is cancelled, or is not paid before its hold expires.
//!
//! - `stock.rs`: the counts and how units move between them
//! - `api.rs`: the seed's routes, kassa's, and reservations
//! - `events.rs`: what products and orders' events do to stock

pub mod api;
pub mod events;
pub mod stock;

use std::time::Duration;

use kassa_platform::{
    consumer::Inboxed,
    migrate::Migrations,
    service::{BuildError, Infra, Service, ServiceParts, Setting},
};
use utoipa::OpenApi;

pub const NAME: &str = "inventory";

pub const MIGRATIONS: Migrations = kassa_platform::migrations!(NAME, [1 "0001_inventory"]);

/// How often holds past their expiry are given back.
pub const EXPIRY_SWEEP: Setting = Setting {
    name: "reservation-sweep-ms",
    default: "1000",
    help: "How often inventory gives back the stock of unpaid orders whose hold expired (ms)",
    secret: false,
};

pub static SERVICE: Service = Service {
    name: NAME,
    default_port: 5004,
    migrations: Some(&MIGRATIONS),
    routes: &[
        "/api/Inventory",
        "/api/StockMovement",
        "/api/inventory",
        "/api/reservations",
    ],
    access: &[api::RULES],
    consumes: &events::TOPICS,
    settings: &[EXPIRY_SWEEP],
    tasks: &[],
    openapi: document,
    build,
};

pub fn document() -> utoipa::openapi::OpenApi {
    api::ApiDoc::openapi()
}

fn build(infra: &Infra) -> Result<ServiceParts, BuildError> {
    let db = infra.db()?;
    let sweep: u64 = infra.options.get(&EXPIRY_SWEEP)?;
    if sweep == 0 {
        return Err(BuildError::setting(&EXPIRY_SWEEP, "must be above zero"));
    }
    let state = api::AppState { db: db.clone() };
    let shutdown = infra.shutdown.clone();
    let sweeper = {
        let db = db.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(sweep));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.wait() => break,
                    _ = tick.tick() => {}
                }
                // Expired holds are given back in batches until none is left.
                loop {
                    match stock::expire(&db, kassa_contracts::now(), 100).await {
                        Ok(100) => continue,
                        Ok(_) => break,
                        Err(e) => {
                            tracing::warn!(error = ?e, "giving back expired holds failed; retrying");
                            break;
                        }
                    }
                }
            }
        }
    };
    Ok(ServiceParts::api(api::router(state), document)
        .with_handler(Inboxed::new(NAME, db.clone(), events::Stock { db }))
        .with_background(sweeper))
}
