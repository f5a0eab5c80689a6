//! kassa as a library: settings and the assembly of services into one process. The `kassa`
//! binary is a thin command line over it, and the flow tests start it the same way.

pub mod app;
pub mod bench;
pub mod dlq;
pub mod registry;
pub mod settings;

pub use app::{Running, Stopped, start};
pub use registry::SERVICES;
pub use settings::{Broker, Infrastructure, Settings};
