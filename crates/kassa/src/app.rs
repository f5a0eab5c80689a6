//! Assembles services into a running process: their databases and migrations, the bus and the
//! cache of the chosen infrastructure, consumers, outbox relays, background tasks and HTTP
//! servers, and stops them all gracefully.

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use axum::Router;
use kassa_gateway::{Upstream, Upstreams};
use kassa_platform::{
    bus::{
        EventBus,
        memory::MemoryBus,
        rabbit::{QueueSpec, RabbitBus},
    },
    cache::{Cache, MemoryCache, RedisCache},
    db::Db,
    http::{Readiness, service_app},
    migrate,
    service::{Infra, ServiceParts},
    shutdown::{self, Shutdown, ShutdownTrigger},
};
use tokio::task::JoinSet;

use crate::settings::{Infrastructure, ServiceName, Settings};

/// A running kassa process.
pub struct Running {
    /// Where each service listens.
    pub addrs: BTreeMap<ServiceName, SocketAddr>,
    trigger: ShutdownTrigger,
    servers: JoinSet<std::io::Result<()>>,
    tasks: JoinSet<()>,
    bus: Arc<dyn EventBus>,
    dbs: Vec<Db>,
}

impl Running {
    /// A listener for this process's stop signal.
    pub fn shutdown_signal(&self) -> Shutdown {
        self.trigger.subscribe()
    }

    /// Stops taking requests, lets those in flight finish, stops consuming and relaying (pending
    /// outbox rows stay for the next start), and closes the databases.
    pub async fn stop(mut self) {
        self.trigger.trigger();
        while let Some(r) = self.servers.join_next().await {
            if let Ok(Err(e)) = r {
                tracing::warn!(error = %e, "server stopped with an error");
            }
        }
        let bus = self.bus.clone();
        let rest = async move {
            while self.tasks.join_next().await.is_some() {}
            bus.drain().await;
        };
        if tokio::time::timeout(Duration::from_secs(15), rest)
            .await
            .is_err()
        {
            tracing::warn!(
                "background work did not finish in time; unsent events stay in the outbox"
            );
        }
        for db in &self.dbs {
            db.close().await;
        }
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

/// Opens a service's database and brings its schema up to date.
pub async fn open_database(settings: &Settings, service: ServiceName) -> anyhow::Result<Db> {
    let location = settings.database(service)?;
    let db = Db::connect(&location).await.with_context(|| {
        format!(
            "opening the {} database ({})",
            service.as_str(),
            describe(&location)
        )
    })?;
    let migrations = match service {
        ServiceName::Orders => &kassa_orders::MIGRATIONS,
        ServiceName::Payments => &kassa_payments::MIGRATIONS,
        ServiceName::Gateway => return Ok(db),
    };
    migrate::run(&db, &[&migrate::PLATFORM, migrations])
        .await
        .with_context(|| format!("migrating the {} database", service.as_str()))?;
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

/// The consumer queues of every service, whether it runs in this process or not.
pub fn all_queues() -> Vec<QueueSpec> {
    let spec = |consumer: &str, topics: &[&str]| QueueSpec {
        consumer: consumer.into(),
        topics: topics.iter().map(|t| t.to_string()).collect(),
    };
    vec![
        spec(kassa_orders::SERVICE, &kassa_orders::events::TOPICS),
        spec(kassa_payments::SERVICE, &kassa_payments::events::TOPICS),
    ]
}

/// Starts `services` in this process.
pub async fn start(settings: Settings, services: &[ServiceName]) -> anyhow::Result<Running> {
    let (trigger, shutdown) = shutdown::channel();
    let (bus, cache): (Arc<dyn EventBus>, Arc<dyn Cache>) = match &settings.infrastructure {
        Infrastructure::Embedded { .. } => (
            Arc::new(MemoryBus::new(settings.retry, shutdown.clone())),
            Arc::new(MemoryCache::new(100_000)),
        ),
        Infrastructure::Distributed {
            amqp_url,
            redis_url,
            prefetch,
            ..
        } => (
            Arc::new(RabbitBus::new(
                amqp_url,
                &settings.namespace,
                all_queues(),
                settings.retry,
                *prefetch,
                shutdown.clone(),
            )),
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
    let mut running = Running {
        addrs: BTreeMap::new(),
        trigger,
        servers: JoinSet::new(),
        tasks: JoinSet::new(),
        bus: bus.clone(),
        dbs: Vec::new(),
    };
    let mut apps: BTreeMap<ServiceName, Router> = BTreeMap::new();
    let mut docs = Vec::new();

    for service in ServiceName::WITH_STORAGE {
        if !services.contains(&service) {
            continue;
        }
        let db = open_database(&settings, service).await?;
        let infra = Infra {
            db: db.clone(),
            bus: bus.clone(),
            cache: cache.clone(),
            shutdown: shutdown.clone(),
        };
        let parts: ServiceParts = match service {
            ServiceName::Orders => kassa_orders::build(&infra, settings.orders.clone()),
            ServiceName::Payments => kassa_payments::build(&infra, settings.payments.clone()),
            ServiceName::Gateway => unreachable!("the gateway has no storage"),
        };
        for subscription in parts.subscriptions {
            bus.subscribe(subscription).await.context("subscribing")?;
        }
        for task in parts.background {
            running.tasks.spawn(task);
        }
        running.tasks.spawn(kassa_platform::housekeeping::run(
            db.clone(),
            Duration::from_secs(600),
            shutdown.clone(),
        ));
        running.tasks.spawn(kassa_platform::outbox::relay(
            db.clone(),
            bus.clone(),
            settings.relay.clone(),
            shutdown.clone(),
        ));
        docs.push(parts.openapi.clone());
        let readiness = Readiness {
            db: Some(db.clone()),
            bus: Some(bus.clone()),
            cache: Some(cache.clone()),
            shutdown: shutdown.clone(),
        };
        apps.insert(
            service,
            service_app(
                service.as_str(),
                parts.api,
                parts.openapi,
                readiness,
                &settings.http,
            ),
        );
        running.dbs.push(db);
    }

    if services.contains(&ServiceName::Gateway) {
        let upstream = |service: ServiceName| -> anyhow::Result<Upstream> {
            match apps.get(&service) {
                Some(app) => Ok(Upstream::InProcess(app.clone())),
                None => {
                    let url = settings
                        .upstream_urls
                        .get(&service)
                        .cloned()
                        .unwrap_or_else(|| format!("http://127.0.0.1:{}", service.default_port()));
                    Upstream::http(&url, settings.http.request_timeout)
                        .context("building the gateway's HTTP client")
                }
            }
        };
        let upstreams = Upstreams {
            orders: upstream(ServiceName::Orders)?,
            payments: upstream(ServiceName::Payments)?,
        };
        if docs.is_empty() {
            docs = vec![kassa_orders::openapi(), kassa_payments::openapi()];
        }
        let readiness = Readiness {
            db: None,
            bus: None,
            cache: None,
            shutdown: shutdown.clone(),
        };
        let app = service_app(
            kassa_gateway::SERVICE,
            kassa_gateway::router(upstreams, settings.http.body_limit),
            kassa_gateway::openapi(docs),
            readiness,
            &settings.http,
        );
        apps.insert(ServiceName::Gateway, app);
    }

    for (service, app) in apps {
        let addr = SocketAddr::new(settings.host, settings.port(service));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {} to {addr}", service.as_str()))?;
        let bound = listener.local_addr()?;
        running.addrs.insert(service, bound);
        running
            .servers
            .spawn(kassa_platform::http::serve(listener, app, shutdown.clone()));
    }
    Ok(running)
}
