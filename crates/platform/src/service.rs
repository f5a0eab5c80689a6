//! What a service is given to start with, and what it hands back to be run.

use std::{future::Future, pin::Pin, sync::Arc};

use axum::Router;

use crate::{
    bus::{EventBus, Subscription},
    cache::Cache,
    db::Db,
    migrate::Migrations,
    shutdown::Shutdown,
};

/// The infrastructure a service runs on, whichever mode kassa is in.
#[derive(Clone)]
pub struct Infra {
    pub db: Db,
    pub bus: Arc<dyn EventBus>,
    pub cache: Arc<dyn Cache>,
    pub shutdown: Shutdown,
}

/// A task that runs until shutdown.
pub type Background = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A built service: its HTTP API with its OpenAPI document, the events it consumes, and the
/// tasks it needs running.
pub struct ServiceParts {
    pub api: Router,
    pub openapi: utoipa::openapi::OpenApi,
    pub subscriptions: Vec<Subscription>,
    pub background: Vec<Background>,
}

/// The static description of a service with its own database.
pub struct ServiceSpec {
    pub name: &'static str,
    pub default_port: u16,
    pub migrations: &'static Migrations,
}
