//! The platform every kassa service is built on: ports (database, event bus, cache) with their
//! adapters, the messaging guarantees (outbox, inbox, retries, dead letters), idempotency keys,
//! HTTP plumbing and telemetry.

pub mod access;
pub mod auth;
pub mod bus;
pub mod cache;
pub mod consumer;
pub mod db;
pub mod housekeeping;
pub mod http;
pub mod idempotency;
pub mod inbox;
pub mod known;
pub mod listing;
pub mod memory;
pub mod migrate;
pub mod outbox;
pub mod password;
pub mod peer;
pub mod principals;
pub mod qr;
pub mod redact;
pub mod resource;
pub mod service;
pub mod shutdown;
pub mod signing;
pub mod stripe;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod validate;

pub use db::{Db, Tx, sql, sql_assembled};
