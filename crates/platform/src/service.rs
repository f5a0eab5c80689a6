//! What a service is ([`Service`], one static value per service crate), what it is given to start
//! with ([`Infra`]), and what it hands back to be run ([`ServiceParts`]).
//!
//! The `kassa` binary holds one list of [`Service`]s and derives everything else from it: ports
//! and their flags, databases and migrations, queues, the gateway's routing table, the merged
//! OpenAPI document, and what tests clean up. Adding a service is its own crate plus one line in
//! that list.

use std::{collections::BTreeMap, future::Future, pin::Pin, str::FromStr, sync::Arc};

use axum::Router;

use crate::{
    bus::{EventBus, Handler},
    cache::Cache,
    db::{Db, DbError},
    http::HttpSettings,
    migrate::Migrations,
    shutdown::Shutdown,
};

/// A service, described once in its own crate.
pub struct Service {
    /// Its name: `kassa serve <name>`, its database (`<namespace>_<name>`), its queue, its logs.
    pub name: &'static str,
    /// The port it listens on unless `KASSA_<NAME>_PORT` says otherwise.
    pub default_port: u16,
    /// Its schema, one script per backend; `None` for a service that keeps nothing (the gateway).
    pub migrations: Option<&'static Migrations>,
    /// Path prefixes the gateway forwards to this service (`/api/orders` forwards the prefix and
    /// everything below it).
    pub routes: &'static [&'static str],
    /// Who may call each of its routes: one rule per operation, declared beside its routes and
    /// enforced for every request ([`crate::access`]).
    pub access: crate::access::Rules,
    /// The event types its consumer is bound to; its queue is named after the service.
    pub consumes: &'static [&'static str],
    /// Its own settings, offered as flags and `KASSA_*` variables.
    pub settings: &'static [Setting],
    /// Commands an operator runs against its database: `kassa <name> <task>`.
    pub tasks: &'static [Task],
    /// Its OpenAPI document, for the gateway's merged one when the service runs elsewhere.
    pub openapi: fn() -> utoipa::openapi::OpenApi,
    /// Builds the running service from the infrastructure it is given.
    pub build: fn(&Infra) -> Result<ServiceParts, BuildError>,
}

impl Service {
    /// Whether it has a database (and so an outbox, an inbox and housekeeping) of its own.
    pub fn has_storage(&self) -> bool {
        self.migrations.is_some()
    }

    /// Whether it consumes events (and so has a queue of its own).
    pub fn consumes_events(&self) -> bool {
        !self.consumes.is_empty()
    }

    /// Whether the gateway forwards `path` to it: whether `path` is under one of its route
    /// prefixes.
    pub fn forwards(&self, path: &str) -> bool {
        self.routes
            .iter()
            .any(|prefix| crate::http::under(path, prefix))
    }

    /// `KASSA_<NAME>_<what>`, the environment variable of one of its per-service settings.
    pub fn env(&self, what: &str) -> String {
        format!("KASSA_{}_{what}", self.name.to_ascii_uppercase())
    }
}

impl Service {
    /// Its OpenAPI document, with who may call each operation.
    pub fn document(&self) -> utoipa::openapi::OpenApi {
        let mut doc = (self.openapi)();
        crate::access::document(&mut doc, self.access);
        doc
    }
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").field("name", &self.name).finish()
    }
}

/// One setting of a service: `--<name>` on the command line, `KASSA_<NAME>` in the environment.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// Kebab case: `provider-latency-ms`.
    pub name: &'static str,
    /// The value when none is given.
    pub default: &'static str,
    /// One line for `--help`.
    pub help: &'static str,
    /// Whether its value is a secret (a key, or a URL that may carry a password): `--help`
    /// does not show it, and `KASSA_<NAME>_FILE` may name a file holding it.
    pub secret: bool,
}

impl Setting {
    /// Its environment variable: `KASSA_PROVIDER_LATENCY_MS`.
    pub fn env(&self) -> String {
        format!("KASSA_{}", self.name.to_ascii_uppercase().replace('-', "_"))
    }
}

/// A command an operator runs against a service's database, outside its running processes
/// (`kassa analytics rebuild`, `kassa keys create --role kiosk --name lobby`). It may run while
/// they do: it is written to be safe beside them.
#[derive(Debug, Clone, Copy)]
pub struct Task {
    /// The words after `kassa` that run it, kebab case: `["analytics", "rebuild"]`.
    pub command: [&'static str; 2],
    /// One line for `--help`.
    pub help: &'static str,
    /// What it is told on the command line.
    pub args: &'static [TaskArg],
    /// Does it and says what it did, in a line for the operator.
    pub run: fn(TaskInput) -> TaskRun,
}

/// One argument of a [`Task`]: `--name VALUE`, or a value in its place (`EMAIL`) when
/// `positional`. Every argument is required.
#[derive(Debug, Clone, Copy)]
pub struct TaskArg {
    pub name: &'static str,
    pub help: &'static str,
    pub positional: bool,
}

/// A [`Task`] under way.
pub type TaskRun = Pin<Box<dyn Future<Output = Result<String, BuildError>> + Send>>;

/// What a [`Task`] is given: the service's database (migrated), its settings, and its
/// arguments by name.
#[derive(Clone)]
pub struct TaskInput {
    pub db: Db,
    pub options: Options,
    pub args: BTreeMap<String, String>,
}

impl TaskInput {
    /// The value of argument `name` (every argument is required, so it is there).
    pub fn arg(&self, name: &str) -> &str {
        self.args.get(name).map_or("", String::as_str)
    }
}

/// The values given for services' settings, by setting name; a setting given none has its
/// default.
#[derive(Debug, Clone, Default)]
pub struct Options(Arc<BTreeMap<String, String>>);

impl Options {
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        Arc::make_mut(&mut self.0).insert(name.to_owned(), value.into());
    }

    /// The setting's value, parsed; a value that does not parse names the setting.
    pub fn get<T>(&self, setting: &Setting) -> Result<T, BuildError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        let text = self
            .0
            .get(setting.name)
            .map(String::as_str)
            .unwrap_or(setting.default);
        text.trim()
            .parse()
            .map_err(|e: T::Err| BuildError::setting(setting, format!("`{text}`: {e}")))
    }
}

/// Why a service could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A setting has a value the service cannot use.
    #[error("--{flag} ({env}): {message}")]
    Setting {
        flag: &'static str,
        env: String,
        message: String,
    },
    /// The service needs a database and was given none.
    #[error("the {0} service needs a database; declare its migrations")]
    NoDatabase(&'static str),
    /// Something else it needs could not be set up.
    #[error("{0}")]
    Start(String),
    /// Its database refused what the service needs to start.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl BuildError {
    pub fn setting(setting: &Setting, message: impl Into<String>) -> Self {
        BuildError::Setting {
            flag: setting.name,
            env: setting.env(),
            message: message.into(),
        }
    }
}

/// How this process reaches another service's API.
#[derive(Clone)]
pub enum Reach {
    /// It runs in this process: call its router directly.
    InProcess(Router),
    /// It runs elsewhere, at this base URL.
    Url(String),
}

/// A service this one may forward to, and how to reach it.
#[derive(Clone)]
pub struct Peer {
    pub service: &'static Service,
    pub reach: Reach,
}

/// The infrastructure a service runs on, whichever mode kassa is in.
#[derive(Clone)]
pub struct Infra {
    /// Its own database; `None` for a service without migrations.
    pub db: Option<Db>,
    pub bus: Arc<dyn EventBus>,
    pub cache: Arc<dyn Cache>,
    pub shutdown: Shutdown,
    pub options: Options,
    pub http: HttpSettings,
    /// Every service that serves routes, reached in this process or over HTTP. Given to the
    /// services that keep nothing (the gateway), once the others are built.
    pub peers: Vec<Peer>,
    /// The same, for services with storage that call others ([`crate::peer::PeerClient`]):
    /// filled once every service of the process is built.
    pub directory: crate::peer::Directory,
    /// The service being built.
    pub service: &'static Service,
}

impl Infra {
    /// Its database.
    pub fn db(&self) -> Result<Db, BuildError> {
        self.db
            .clone()
            .ok_or(BuildError::NoDatabase(self.service.name))
    }
}

/// A task that runs until shutdown.
pub type Background = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// How a service's OpenAPI document is made. It is made when it is first asked for, not at
/// start: a document is large to build and to hold, and most processes are never asked.
pub type Document = Arc<dyn Fn() -> utoipa::openapi::OpenApi + Send + Sync>;

/// A built service: its HTTP API with its OpenAPI document, the handler of the events it
/// consumes, and the tasks it needs running.
pub struct ServiceParts {
    pub api: Router,
    pub openapi: Document,
    /// Handles the event types the service declares in `consumes`.
    pub handler: Option<Arc<dyn Handler>>,
    pub background: Vec<Background>,
}

impl ServiceParts {
    /// An API and its document, nothing else.
    pub fn api(
        api: Router,
        openapi: impl Fn() -> utoipa::openapi::OpenApi + Send + Sync + 'static,
    ) -> Self {
        ServiceParts {
            api,
            openapi: Arc::new(openapi),
            handler: None,
            background: Vec::new(),
        }
    }

    pub fn with_handler(mut self, handler: impl Handler) -> Self {
        self.handler = Some(Arc::new(handler));
        self
    }

    pub fn with_background(mut self, task: impl Future<Output = ()> + Send + 'static) -> Self {
        self.background.push(Box::pin(task));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LATENCY: Setting = Setting {
        name: "provider-latency-ms",
        default: "0",
        help: "",
        secret: false,
    };

    #[test]
    fn settings_read_their_default_or_the_given_value() {
        let mut options = Options::default();
        assert_eq!(options.get::<u64>(&LATENCY).unwrap(), 0);
        options.set("provider-latency-ms", "250");
        assert_eq!(options.get::<u64>(&LATENCY).unwrap(), 250);
        options.set("provider-latency-ms", "soon");
        let e = options.get::<u64>(&LATENCY).unwrap_err().to_string();
        assert!(e.contains("--provider-latency-ms") && e.contains("KASSA_PROVIDER_LATENCY_MS"));
    }
}
