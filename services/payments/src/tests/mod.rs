//! The payments service's tests against real storage, in the library's own test binary (one binary
//! a service: it links once).

mod common;
mod manual_payments;
mod order_events;
mod payment_cache;
mod webhook;
