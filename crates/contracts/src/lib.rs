//! What kassa services agree on: money, the event envelope and the versioned event payloads.
//!
//! Every service may import this crate; no service imports another service's crate.

pub mod envelope;
pub mod events;
pub mod json;
pub mod money;
pub mod status;

pub use envelope::{Envelope, EventContext};
pub use money::{Currency, Money, MoneyError};
