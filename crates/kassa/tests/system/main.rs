//! kassa's system tests, as one test binary: the whole system started in this process (or as
//! `kassa` processes, in `e2e`) against real infrastructure, each scenario on every backend it
//! names. One binary links once; the test runner (cargo-nextest, `scripts/test`) runs its
//! scenarios concurrently, each in a process of its own.

#[macro_use]
mod support;

mod access;
mod accounts;
mod analytics;
mod authorization;
mod e2e;
mod flows;
mod gym;
mod journey;
mod kiosk;
mod messaging;
mod notifications;
mod secrets;
mod seed001;
mod stripe;
