//! Assembles services into a running process: their databases and migrations, the bus and the
//! cache of the chosen infrastructure, consumers, outbox relays, background tasks and HTTP
//! servers, and stops them all gracefully.

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use axum::Router;
use kassa_platform::{
    bus::{EventBus, Subscription, memory::MemoryBus, rabbit::RabbitBus},
    cache::{Cache, MemoryCache, RedisCache},
    db::Db,
    http::{Readiness, service_app},
    migrate,
    service::{Infra, Peer, Reach, Service, ServiceParts},
    shutdown::{self, Shutdown, ShutdownTrigger},
};
use tokio::task::JoinSet;

use crate::{
    registry,
    settings::{Broker, Infrastructure, Settings},
};

/// How a stop went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every background task finished, and the bus handed over what it held.
    Cleanly,
    /// Background work still ran 15 s after the servers stopped, and was left (events not yet
    /// sent stay in the outbox for the next start).
    TimedOut,
}

/// A running kassa process.
pub struct Running {
    /// Where each service listens, by name.
    pub addrs: BTreeMap<&'static str, SocketAddr>,
    trigger: ShutdownTrigger,
    servers: JoinSet<std::io::Result<()>>,
    tasks: JoinSet<()>,
    bus: Arc<dyn EventBus>,
    dbs: Vec<Db>,
    directory: kassa_platform::peer::Directory,
}

impl Running {
    /// A listener for this process's stop signal.
    pub fn shutdown_signal(&self) -> Shutdown {
        self.trigger.subscribe()
    }

    /// The bus the services publish to and consume from.
    pub fn bus(&self) -> Arc<dyn EventBus> {
        self.bus.clone()
    }

    /// Stops taking requests, lets those in flight finish, stops consuming and relaying (pending
    /// outbox rows stay for the next start), and closes the databases.
    pub async fn stop(mut self) -> Stopped {
        self.trigger.trigger();
        while let Some(r) = self.servers.join_next().await {
            if let Ok(Err(e)) = r {
                tracing::warn!(error = %e, "server stopped with an error");
            }
        }
        // No request is in flight now: let go of the routers the directory holds, so that work
        // which ends with its service's last handle (orders' writer, once it has written what
        // it was given) ends.
        self.directory.empty();
        let bus = self.bus.clone();
        let rest = async move {
            while self.tasks.join_next().await.is_some() {}
            bus.drain().await;
        };
        let stopped = match tokio::time::timeout(Duration::from_secs(15), rest).await {
            Ok(()) => Stopped::Cleanly,
            Err(_) => {
                tracing::warn!(
                    "background work did not finish in time; unsent events stay in the outbox"
                );
                Stopped::TimedOut
            }
        };
        for db in &self.dbs {
            db.close().await;
        }
        stopped
    }

    /// Starts a built service's background tasks and wraps its API with the HTTP plumbing.
    fn mount(
        &mut self,
        service: &'static Service,
        parts: ServiceParts,
        readiness: Readiness,
        settings: &Settings,
    ) -> Router {
        for task in parts.background {
            self.tasks.spawn(task);
        }
        service_app(
            service.name,
            service.access,
            parts.api,
            parts.openapi,
            readiness,
            &settings.http,
        )
    }

    /// Runs until Ctrl-C or SIGTERM, then stops gracefully.
    pub async fn until_signalled(self) {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            _ = terminate => {}
        }
        tracing::info!("shutting down: finishing requests in flight");
        self.stop().await;
        tracing::info!("stopped");
    }
}

/// The Kafka bus, when this binary has it.
#[cfg(feature = "kafka")]
fn kafka_bus(
    kafka: &kassa_platform::bus::kafka::KafkaSettings,
    settings: &Settings,
    prefetch: u16,
    shutdown: &Shutdown,
) -> anyhow::Result<Arc<dyn EventBus>> {
    Ok(Arc::new(
        kassa_platform::bus::kafka::KafkaBus::new(
            kafka.clone(),
            &settings.namespace,
            registry::queues(),
            settings.retry,
            prefetch,
            shutdown.clone(),
        )
        .context("the Kafka client")?,
    ))
}

#[cfg(not(feature = "kafka"))]
fn kafka_bus(
    _: &kassa_platform::bus::kafka::KafkaSettings,
    _: &Settings,
    _: u16,
    _: &Shutdown,
) -> anyhow::Result<Arc<dyn EventBus>> {
    Err(without_kafka())
}

/// Why a binary built without Kafka cannot use it.
pub fn without_kafka() -> anyhow::Error {
    anyhow::anyhow!(
        "KASSA_BUS=kafka, but this kassa was built without Kafka: build it with `--features kafka`"
    )
}

/// Opens a service's database and brings its schema up to date.
pub async fn open_database(settings: &Settings, service: &'static Service) -> anyhow::Result<Db> {
    let location = settings.database(service)?;
    let db = Db::connect(&location).await.with_context(|| {
        format!(
            "opening the {} database ({})",
            service.name,
            describe(&location)
        )
    })?;
    if let Some(migrations) = service.migrations {
        migrate::run(&db, &[&migrate::PLATFORM, migrations])
            .await
            .with_context(|| format!("migrating the {} database", service.name))?;
    }
    Ok(db)
}

fn describe(location: &kassa_platform::db::DbLocation) -> String {
    match location {
        kassa_platform::db::DbLocation::Sqlite { path } => path.display().to_string(),
        kassa_platform::db::DbLocation::Postgres { url, .. } => match url.rsplit_once('@') {
            // Never print a password.
            Some((_, host)) => format!("postgres://…@{host}"),
            None => url.clone(),
        },
    }
}

/// Starts `services` in this process.
pub async fn start(
    mut settings: Settings,
    services: &[&'static Service],
) -> anyhow::Result<Running> {
    kassa_platform::http::https_ready();
    let (trigger, shutdown) = shutdown::channel();
    let (bus, cache): (Arc<dyn EventBus>, Arc<dyn Cache>) = match &settings.infrastructure {
        Infrastructure::Embedded { .. } => (
            Arc::new(MemoryBus::new(settings.retry, shutdown.clone())),
            Arc::new(MemoryCache::new(100_000)),
        ),
        Infrastructure::Distributed {
            broker,
            redis_url,
            prefetch,
            ..
        } => (
            match broker {
                Broker::RabbitMq { url } => Arc::new(RabbitBus::new(
                    url,
                    &settings.namespace,
                    registry::queues(),
                    settings.retry,
                    *prefetch,
                    shutdown.clone(),
                )),
                Broker::Kafka(kafka) => kafka_bus(kafka, &settings, *prefetch, &shutdown)?,
            },
            Arc::new(
                RedisCache::new(redis_url, &settings.namespace)
                    .map_err(|e| anyhow::anyhow!("KASSA_REDIS_URL: {e}"))?,
            ),
        ),
    };
    // Declare the broker's queues up front when it is reachable; if it is not, the services
    // start anyway and the topology is declared when the publisher first connects.
    if let Err(e) = bus.ready().await {
        tracing::warn!(error = %e, "event bus not reachable yet; events wait in the outbox until it is");
    }
    let directory = kassa_platform::peer::Directory::default();
    // API keys and people's roles are the users service's to tell, wherever it runs.
    settings.http.principals = Some(kassa_platform::principals::Principals::new(
        kassa_platform::principals::PeerKeeper::new(
            directory.clone(),
            settings.http.tokens.clone(),
        ),
    ));
    if !settings.http.open_routes.0.is_empty() {
        tracing::warn!(
            groups = %settings.http.open_routes.0.join(","),
            "route groups open to anonymous callers (KASSA_OPEN_ROUTES): see docs/security.md for what each exposes"
        );
    }
    let mut running = Running {
        addrs: BTreeMap::new(),
        trigger,
        servers: JoinSet::new(),
        tasks: JoinSet::new(),
        bus: bus.clone(),
        dbs: Vec::new(),
        directory: directory.clone(),
    };
    running
        .tasks
        .spawn(kassa_platform::http::metrics_upkeep(shutdown.clone()));
    let mut apps: BTreeMap<&'static str, Router> = BTreeMap::new();
    let infra = |service: &'static Service, db: Option<Db>, peers: Vec<Peer>| Infra {
        db,
        bus: bus.clone(),
        cache: cache.clone(),
        shutdown: shutdown.clone(),
        options: settings.options.clone(),
        http: settings.http.clone(),
        peers,
        directory: directory.clone(),
        service,
    };

    // Services with storage first: those without (the gateway) route to them.
    let (stateful, stateless): (Vec<&'static Service>, Vec<&'static Service>) =
        services.iter().copied().partition(|s| s.has_storage());
    // Relays start once every consumer of this process has subscribed: the in-process bus
    // delivers a message to the subscribers it has when it is published, so an event relayed
    // before its consumer subscribed would reach nobody and leave the outbox all the same.
    let mut relays = Vec::new();
    // Every database opened (and migrated) at once: a start waits for the slowest, not the sum.
    let dbs = futures_util::future::try_join_all(
        stateful
            .iter()
            .map(|service| open_database(&settings, service)),
    )
    .await?;
    for (service, db) in stateful.into_iter().zip(dbs) {
        let mut parts = (service.build)(&infra(service, Some(db.clone()), Vec::new()))
            .with_context(|| format!("starting {}", service.name))?;
        if let Some(handler) = parts.handler.take() {
            let subscription = Subscription {
                consumer: service.name.into(),
                topics: service.consumes.iter().map(|t| t.to_string()).collect(),
                handler,
                db: db.clone(),
            };
            bus.subscribe(subscription).await.context("subscribing")?;
        }
        running.tasks.spawn(kassa_platform::housekeeping::run(
            db.clone(),
            Duration::from_secs(600),
            Duration::from_secs(30),
            shutdown.clone(),
        ));
        relays.push((service.name, db.clone()));
        let readiness = Readiness {
            db: Some(db.clone()),
            bus: Some(bus.clone()),
            cache: Some(cache.clone()),
            shutdown: shutdown.clone(),
        };
        running.dbs.push(db);
        let app = running.mount(service, parts, readiness, &settings);
        apps.insert(service.name, app);
    }
    let peers: Vec<Peer> = registry::SERVICES
        .iter()
        .copied()
        .filter(|s| !s.routes.is_empty())
        .map(|service| Peer {
            service,
            reach: match apps.get(service.name) {
                Some(app) => Reach::InProcess(app.clone()),
                None => Reach::Url(settings.upstream_url(service)),
            },
        })
        .collect();
    // Services with storage that call others find them from now on, before any event is
    // relayed to them.
    directory.fill(peers.clone());
    for (name, db) in relays {
        running.tasks.spawn(kassa_platform::outbox::relay(
            name,
            db,
            bus.clone(),
            settings.relay.clone(),
            shutdown.clone(),
        ));
    }

    for service in stateless {
        let parts = (service.build)(&infra(service, None, peers.clone()))
            .with_context(|| format!("starting {}", service.name))?;
        anyhow::ensure!(
            parts.handler.is_none(),
            "{} consumes events but has no database for its inbox",
            service.name
        );
        let readiness = Readiness {
            db: None,
            bus: None,
            cache: None,
            shutdown: shutdown.clone(),
        };
        let app = running.mount(service, parts, readiness, &settings);
        apps.insert(service.name, app);
    }

    for service in services {
        let Some(app) = apps.remove(service.name) else {
            continue;
        };
        let addr = SocketAddr::new(settings.host, settings.port(service));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {} to {addr}", service.name))?;
        let bound = listener.local_addr()?;
        running.addrs.insert(service.name, bound);
        let (shutdown, http) = (shutdown.clone(), settings.http.clone());
        running.servers.spawn(async move {
            kassa_platform::http::serve(listener, app, shutdown, &http).await
        });
    }
    Ok(running)
}
