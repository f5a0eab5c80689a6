//! The orders service: places orders, follows their payment to PAID or FAILED, and cancels them.
//!
//! - `api.rs`: the HTTP API of seed 003
//! - `domain.rs`: orders and their state machine
//! - `store.rs`: the orders table
//! - `events.rs`: what payment outcomes do to orders
//! - `placing.rs`: new orders stored many per transaction under load

pub mod api;
pub mod domain;
pub mod events;
pub mod placing;
pub mod store;

use std::sync::Arc;

use kassa_contracts::Currency;
use kassa_platform::{
    bus::Subscription,
    migrate::{Migration, Migrations},
    service::{Infra, ServiceParts, ServiceSpec},
};
use utoipa::OpenApi;

pub const SERVICE: &str = "orders";

pub const MIGRATIONS: Migrations = Migrations {
    component: SERVICE,
    steps: &[Migration {
        version: 1,
        name: "orders",
        postgres: include_str!("../migrations/postgres/0001_orders.sql"),
        sqlite: include_str!("../migrations/sqlite/0001_orders.sql"),
    }],
};

pub const SPEC: ServiceSpec = ServiceSpec {
    name: SERVICE,
    default_port: 5001,
    migrations: &MIGRATIONS,
};

/// Settings of the orders service.
#[derive(Debug, Clone)]
pub struct Config {
    /// The currency of an order that names none.
    pub default_currency: Currency,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            default_currency: Currency::USD,
        }
    }
}

pub fn build(infra: &Infra, config: Config) -> ServiceParts {
    let (placer, writer) = placing::Placer::start(infra.db.clone());
    let state = api::AppState {
        db: infra.db.clone(),
        default_currency: config.default_currency,
        placer,
    };
    ServiceParts {
        api: api::router(state),
        openapi: api::OrdersApi::openapi(),
        subscriptions: vec![Subscription {
            consumer: SERVICE.into(),
            topics: events::TOPICS.iter().map(|t| t.to_string()).collect(),
            handler: Arc::new(events::PaymentOutcomes {
                db: infra.db.clone(),
            }),
            db: infra.db.clone(),
        }],
        background: vec![writer],
    }
}

/// The service's OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api::OrdersApi::openapi()
}
