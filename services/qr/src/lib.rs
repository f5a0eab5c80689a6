//! The qr service of seed 002: one-time pickup codes for a dispenser. A paid order for items
//! gets a code for each unit a dispenser hands out; a registered dispenser redeems each once,
//! within 15 minutes of its issue; when every unit is handed out, `pickup.completed` completes
//! the order.
//!
//! - `codes.rs`: issuing, redeeming and revoking codes
//! - `api.rs`: the seed's routes, dispensers' registration, a code's image
//! - `events.rs`: what paid and cancelled orders do here

pub mod api;
pub mod codes;
pub mod events;

use kassa_platform::{
    consumer::Inboxed,
    migrate::Migrations,
    service::{BuildError, Infra, Service, ServiceParts},
};
use utoipa::OpenApi;

pub const NAME: &str = "qr";

pub const MIGRATIONS: Migrations = kassa_platform::migrations!(NAME, [1 "0001_qr"]);

pub static SERVICE: Service = Service {
    name: NAME,
    default_port: 5005,
    migrations: Some(&MIGRATIONS),
    routes: &["/api/QrCode"],
    access: &[api::RULES],
    consumes: &events::TOPICS,
    settings: &[],
    tasks: &[],
    openapi: document,
    build,
};

pub fn document() -> utoipa::openapi::OpenApi {
    api::ApiDoc::openapi()
}

fn build(infra: &Infra) -> Result<ServiceParts, BuildError> {
    let db = infra.db()?;
    Ok(
        ServiceParts::api(api::router(api::AppState { db: db.clone() }), document)
            .with_handler(Inboxed::new(NAME, db, events::Pickups)),
    )
}
