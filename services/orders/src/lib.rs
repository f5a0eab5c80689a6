//! The orders service: places orders, follows their payment to PAID or FAILED, and cancels them.
//!
//! - `api.rs`: the HTTP API of seed 003
//! - `customer.rs`: seed 004's routes for signed-in customers
//! - `domain.rs`: orders and their state machine
//! - `store.rs`: the orders table
//! - `events.rs`: what payment outcomes do to orders
//! - `placing.rs`: new orders stored many per transaction under load
//! - `items.rs`: orders for products of the catalog, priced there and held in inventory
//! - `numbered.rs`: seed 001's routes, orders by number with integer statuses

pub mod api;
pub mod customer;
pub mod domain;
pub mod events;
pub mod items;
pub mod numbered;
pub mod placing;
pub mod store;

use kassa_contracts::Currency;
use kassa_platform::{
    consumer::Inboxed,
    migrate::Migrations,
    service::{BuildError, Infra, Options, Service, ServiceParts, Setting},
};
use utoipa::OpenApi;

pub const NAME: &str = "orders";

pub const MIGRATIONS: Migrations = kassa_platform::migrations!(NAME, [1 "0001_orders", 2 "0002_items", 3 "0003_by_user", 4 "0004_lines", 5 "0005_numbers"]);

/// The currency of an order that names none.
pub const CURRENCY: Setting = Setting {
    name: "currency",
    default: "USD",
    help: "Currency of orders that name none (ISO 4217)",
    secret: false,
};

pub static SERVICE: Service = Service {
    name: NAME,
    default_port: 5001,
    migrations: Some(&MIGRATIONS),
    routes: &[
        "/api/orders",
        "/order",
        "/api/order",
        "/api/Order",
        "/orders",
    ],
    access: &[api::RULES, numbered::RULES, customer::RULES],
    consumes: &events::TOPICS,
    settings: &[CURRENCY],
    tasks: &[],
    openapi: document,
    build,
};

/// Settings of the orders service.
#[derive(Debug, Clone)]
pub struct Config {
    /// The currency of an order that names none.
    pub default_currency: Currency,
}

impl Config {
    pub fn from_options(options: &Options) -> Result<Self, BuildError> {
        let code: String = options.get(&CURRENCY)?;
        let default_currency = Currency::parse(&code).map_err(|_| {
            BuildError::setting(
                &CURRENCY,
                format!("{code} is not an ISO 4217 code kassa supports"),
            )
        })?;
        Ok(Config { default_currency })
    }
}

fn build(infra: &Infra) -> Result<ServiceParts, BuildError> {
    let config = Config::from_options(&infra.options)?;
    let db = infra.db()?;
    let (placer, writer) = placing::Placer::start(db.clone());
    // The catalog and the inventory, called as a service.
    let peer = |name| {
        std::sync::Arc::new(
            kassa_platform::peer::PeerClient::new(
                infra.directory.clone(),
                name,
                kassa_platform::peer::PeerSettings::default(),
            )
            .as_service(infra.http.tokens.clone()),
        )
    };
    let state = api::AppState {
        db: db.clone(),
        default_currency: config.default_currency,
        placer,
        catalog: items::Catalog {
            client: peer("catalog"),
            cache: infra.cache.clone(),
        },
        inventory: items::Inventory {
            client: peer("inventory"),
        },
    };
    Ok(ServiceParts::api(
        api::router(state.clone())
            .merge(customer::router(state.clone()))
            .merge(numbered::router(state)),
        document,
    )
    .with_handler(Inboxed::new(
        NAME,
        db.clone(),
        events::PaymentOutcomes {
            db,
            prices: infra.cache.clone(),
        },
    ))
    .with_background(writer))
}

/// The document: seed 003's routes, and seed 004's under the service's paths and the
/// gateway's.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = api::OrdersApi::openapi();
    doc.merge(customer::CustomerApi::openapi());
    let mut numbered = numbered::NumberedApi::openapi();
    kassa_platform::http::openapi::also_under(&mut numbered, "/api/Order", "/orders", "_gateway");
    doc.merge(numbered);
    kassa_platform::http::openapi::also_under(&mut doc, "/order", "/api/order", "_api");
    doc
}

// The tests name this crate as a user of it would.
#[cfg(test)]
extern crate self as kassa_orders;
#[cfg(test)]
mod tests;
