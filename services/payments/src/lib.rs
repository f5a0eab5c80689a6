//! The payments service: charges each order through a payment provider and reports the outcome;
//! cancels or refunds the payment of a cancelled order.
//!
//! - `api.rs`: the HTTP API of seed 003
//! - `domain.rs`: payments and their state machine
//! - `provider.rs`: the provider port and the simulated gateway
//! - `processor.rs`: where a payment gets approved, declined or failed
//! - `store.rs`: the payments table
//! - `events.rs`: what order events do to payments

pub mod api;
pub mod domain;
pub mod events;
pub mod processor;
pub mod provider;
pub mod store;

use std::sync::Arc;

use kassa_platform::{
    bus::Subscription,
    migrate::{Migration, Migrations},
    service::{Infra, ServiceParts, ServiceSpec},
};
use utoipa::OpenApi;

pub use processor::ProcessorSettings;
pub use provider::{PaymentProvider, SimulatedGateway, SimulatedSettings};

pub const SERVICE: &str = "payments";

pub const MIGRATIONS: Migrations = Migrations {
    component: SERVICE,
    steps: &[Migration {
        version: 1,
        name: "payments",
        postgres: include_str!("../migrations/postgres/0001_payments.sql"),
        sqlite: include_str!("../migrations/sqlite/0001_payments.sql"),
    }],
};

pub const SPEC: ServiceSpec = ServiceSpec {
    name: SERVICE,
    default_port: 5019,
    migrations: &MIGRATIONS,
};

/// Settings of the payments service.
#[derive(Clone)]
pub struct Config {
    pub provider: Arc<dyn PaymentProvider>,
    pub processor: ProcessorSettings,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            provider: Arc::new(SimulatedGateway::new(SimulatedSettings::default())),
            processor: ProcessorSettings::default(),
        }
    }
}

pub fn build(infra: &Infra, config: Config) -> ServiceParts {
    let (processor, processor_loop) = processor::processor(
        infra.db.clone(),
        config.provider.clone(),
        infra.cache.clone(),
        config.processor.clone(),
    );
    let handler = events::OrderEvents {
        db: infra.db.clone(),
        processor,
        provider: config.provider.clone(),
        cache: infra.cache.clone(),
        lease: config.processor.lease,
    };
    let shutdown = infra.shutdown.clone();
    ServiceParts {
        api: api::router(api::AppState {
            db: infra.db.clone(),
            cache: infra.cache.clone(),
        }),
        openapi: api::PaymentsApi::openapi(),
        subscriptions: vec![Subscription {
            consumer: SERVICE.into(),
            topics: events::TOPICS.iter().map(|t| t.to_string()).collect(),
            handler: Arc::new(handler),
            db: infra.db.clone(),
        }],
        background: vec![Box::pin(processor_loop.run(shutdown))],
    }
}

/// The service's OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api::PaymentsApi::openapi()
}
