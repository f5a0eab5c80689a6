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

/// The current time to the microsecond, the precision both databases store: a value kept in
/// memory (and cached) equals the one read back.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}
