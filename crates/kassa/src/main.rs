//! The `kassa` command line: run every service at once (`up`), run some of them against shared
//! infrastructure (`serve`), migrate, inspect dead letters, and benchmark.

use std::{collections::HashMap, net::IpAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use kassa::{
    ServiceName, Settings,
    bench::{self, BenchOptions},
    dlq,
    settings::{self, Infrastructure},
};
use kassa_contracts::Currency;
use kassa_payments::{ProcessorSettings, SimulatedGateway, SimulatedSettings};
use kassa_platform::bus::RetryPolicy;

const ABOUT: &str = "kassa: an event-driven order and payment platform.

Two ways to run the same services:
  kassa up                     every service in one process, each on its own port, with one
                               SQLite file per service under ./data, the in-process event bus
                               and an in-memory cache. Nothing to install or configure.
  kassa serve orders payments  the named services in this process against PostgreSQL (one
                               database per service, created if missing), RabbitMQ and Redis.
                               Run as many replicas of a service as you like.

Every option can also be set by the environment variable shown with it. The seeds' names are
understood too: ConnectionStrings__PostgreSQL (Host=…;Port=…;Database=…;Username=…;Password=…),
RabbitMQ__HostName (with RabbitMQ__UserName, RabbitMQ__Password, RabbitMQ__Port), and
ConnectionStrings__Redis (host:port). KASSA_<SERVICE>_DATABASE_URL names one service's database.";

#[derive(Parser)]
#[command(name = "kassa", version, about = "An event-driven order and payment platform", long_about = ABOUT)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every service in one process with embedded storage (the default way to start).
    Up {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        embedded: Embedded,
    },
    /// Run the named services in this process against PostgreSQL, RabbitMQ and Redis.
    Serve {
        /// Which services to run here.
        #[arg(required = true, value_enum)]
        services: Vec<ServiceName>,
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        distributed: Distributed,
    },
    /// Create the databases if missing and bring their schemas up to date (services also do
    /// this when they start). Embedded unless a database URL is given.
    Migrate {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        target: Target,
    },
    /// Inspect or redrive the messages consumers gave up on.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Drive checkouts against a running kassa and report throughput and latency.
    Bench {
        /// The gateway's base URL.
        #[arg(long, env = "KASSA_BENCH_URL", default_value = "http://127.0.0.1:3000")]
        url: String,
        /// How many orders to place.
        #[arg(short = 'n', long, default_value_t = 10_000)]
        orders: usize,
        /// Requests in flight at once.
        #[arg(short = 'c', long, default_value_t = 64)]
        concurrency: usize,
        /// Orders per second to offer (default: as fast as they are accepted).
        #[arg(long)]
        rate: Option<f64>,
        /// The amount of each order.
        #[arg(long, default_value = "10")]
        amount: String,
        /// Seconds to wait for the last order to settle.
        #[arg(long, default_value_t = 120)]
        settle_timeout: u64,
        /// Also measure pgbench's single-row insert TPS on this PostgreSQL, for a ratio.
        #[arg(long)]
        pgbench: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum DlqAction {
    /// Show every dead-lettered message with its error and attempts.
    List {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        target: Target,
        /// Only this consumer's messages.
        #[arg(long, value_enum)]
        consumer: Option<ServiceName>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send dead-lettered messages back for a fresh set of attempts.
    Redrive {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        target: Target,
        /// Only this consumer's messages.
        #[arg(long, value_enum)]
        consumer: Option<ServiceName>,
    },
}

#[derive(Args, Clone)]
struct Common {
    /// Prefix of database names, queues, exchanges and cache keys.
    #[arg(long, env = "KASSA_NAMESPACE", default_value = "kassa", global = true)]
    namespace: String,
    /// Address to listen on.
    #[arg(long, env = "KASSA_HOST", default_value = "127.0.0.1", global = true)]
    host: IpAddr,
    #[arg(
        long,
        env = "KASSA_GATEWAY_PORT",
        default_value_t = 3000,
        global = true
    )]
    gateway_port: u16,
    #[arg(long, env = "KASSA_ORDERS_PORT", default_value_t = 5001, global = true)]
    orders_port: u16,
    #[arg(
        long,
        env = "KASSA_PAYMENTS_PORT",
        default_value_t = 5019,
        global = true
    )]
    payments_port: u16,
    /// Where the gateway reaches orders when orders runs in another process.
    #[arg(
        long,
        env = "KASSA_ORDERS_URL",
        default_value = "http://127.0.0.1:5001",
        global = true
    )]
    orders_url: String,
    /// Where the gateway reaches payments when payments runs in another process.
    #[arg(
        long,
        env = "KASSA_PAYMENTS_URL",
        default_value = "http://127.0.0.1:5019",
        global = true
    )]
    payments_url: String,
    /// Attempts to handle an event before it is dead-lettered.
    #[arg(long, env = "KASSA_MAX_ATTEMPTS", default_value_t = 5, global = true)]
    max_attempts: u32,
    /// Wait before the second attempt, in milliseconds; it doubles for each later one.
    #[arg(
        long,
        env = "KASSA_RETRY_BASE_MS",
        default_value_t = 200,
        global = true
    )]
    retry_base_ms: u64,
    /// Simulated payment provider latency per charge, in milliseconds.
    #[arg(
        long,
        env = "KASSA_PROVIDER_LATENCY_MS",
        default_value_t = 0,
        global = true
    )]
    provider_latency_ms: u64,
    /// Share of otherwise approved charges the simulated provider declines (0 to 1).
    #[arg(
        long,
        env = "KASSA_PROVIDER_DECLINE_RATE",
        default_value_t = 0.0,
        global = true
    )]
    provider_decline_rate: f64,
    /// Charges waiting on the provider at once, at most.
    #[arg(
        long,
        env = "KASSA_PAYMENTS_IN_FLIGHT",
        default_value_t = 10_000,
        global = true
    )]
    payments_in_flight: usize,
    /// Seconds a process owns a PROCESSING payment before another may take it over.
    #[arg(
        long,
        env = "KASSA_PAYMENT_LEASE_SECS",
        default_value_t = 30,
        global = true
    )]
    payment_lease_secs: u64,
    /// Seconds an outbox row stays claimed by one relay.
    #[arg(
        long,
        env = "KASSA_OUTBOX_LEASE_SECS",
        default_value_t = 10,
        global = true
    )]
    outbox_lease_secs: u64,
    /// Currency of orders that name none.
    #[arg(long, env = "KASSA_CURRENCY", default_value = "USD", global = true)]
    currency: String,
    /// Seconds before a request is answered 503.
    #[arg(
        long,
        env = "KASSA_REQUEST_TIMEOUT_SECS",
        default_value_t = 30,
        global = true
    )]
    request_timeout_secs: u64,
    /// Log format: text or json.
    #[arg(long, env = "KASSA_LOG_FORMAT", default_value = "text", global = true)]
    log_format: String,
}

#[derive(Args, Clone)]
struct Embedded {
    /// Folder of the SQLite databases (one file per service).
    #[arg(long, env = "KASSA_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
}

#[derive(Args, Clone)]
struct Distributed {
    /// A PostgreSQL server; each service uses its own database on it (<namespace>_<service>).
    #[arg(long, env = "KASSA_DATABASE_URL")]
    database_url: Option<String>,
    /// RabbitMQ.
    #[arg(long, env = "KASSA_AMQP_URL")]
    amqp_url: Option<String>,
    /// Redis.
    #[arg(long, env = "KASSA_REDIS_URL")]
    redis_url: Option<String>,
    /// Connections per service database.
    #[arg(long, env = "KASSA_DB_MAX_CONNECTIONS", default_value_t = 16)]
    db_max_connections: u32,
    /// Unacknowledged messages per consumer.
    #[arg(long, env = "KASSA_AMQP_PREFETCH", default_value_t = 256)]
    prefetch: u16,
}

/// Embedded storage, or the distributed one when a database URL is given.
#[derive(Args, Clone)]
struct Target {
    #[command(flatten)]
    embedded: Embedded,
    #[command(flatten)]
    distributed: Distributed,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Distributed {
    fn database_url(&self) -> anyhow::Result<Option<String>> {
        if let Some(url) = &self.database_url {
            return Ok(Some(url.clone()));
        }
        env("ConnectionStrings__PostgreSQL")
            .map(|cs| {
                settings::postgres_url_from_connection_string(&cs)
                    .context("ConnectionStrings__PostgreSQL")
            })
            .transpose()
    }

    fn infrastructure(&self) -> anyhow::Result<Infrastructure> {
        let database_url = self
            .database_url()?
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let amqp_url = match (&self.amqp_url, env("RabbitMQ__HostName")) {
            (Some(url), _) => url.clone(),
            (None, Some(host)) => settings::amqp_url_from_host(
                &host,
                env("RabbitMQ__UserName").as_deref(),
                env("RabbitMQ__Password").as_deref(),
                env("RabbitMQ__Port").as_deref(),
            )?,
            (None, None) => "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
        };
        let redis_url = match (&self.redis_url, env("ConnectionStrings__Redis")) {
            (Some(url), _) => url.clone(),
            (None, Some(cs)) => settings::redis_url_from_connection_string(&cs)?,
            (None, None) => "redis://127.0.0.1:6379/".into(),
        };
        let database_overrides = ServiceName::WITH_STORAGE
            .iter()
            .filter_map(|s| {
                env(&format!(
                    "KASSA_{}_DATABASE_URL",
                    s.as_str().to_ascii_uppercase()
                ))
                .map(|url| (*s, url))
            })
            .collect();
        Ok(Infrastructure::Distributed {
            database_url,
            database_overrides,
            amqp_url,
            redis_url,
            max_connections: self.db_max_connections,
            prefetch: self.prefetch,
        })
    }
}

impl Target {
    fn infrastructure(&self) -> anyhow::Result<Infrastructure> {
        if self.distributed.database_url()?.is_some() {
            self.distributed.infrastructure()
        } else {
            Ok(Infrastructure::Embedded {
                data_dir: self.embedded.data_dir.clone(),
            })
        }
    }
}

impl Common {
    fn settings(&self, infrastructure: Infrastructure) -> anyhow::Result<Settings> {
        anyhow::ensure!(self.max_attempts >= 1, "--max-attempts must be at least 1");
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.provider_decline_rate),
            "--provider-decline-rate must be between 0 and 1"
        );
        anyhow::ensure!(
            self.payments_in_flight >= 1,
            "--payments-in-flight must be at least 1"
        );
        let mut s = Settings::embedded(PathBuf::from("./data"));
        s.infrastructure = infrastructure;
        s.namespace = self.namespace.clone();
        s.host = self.host;
        s.ports = HashMap::from([
            (ServiceName::Gateway, self.gateway_port),
            (ServiceName::Orders, self.orders_port),
            (ServiceName::Payments, self.payments_port),
        ]);
        s.upstream_urls = HashMap::from([
            (ServiceName::Orders, self.orders_url.clone()),
            (ServiceName::Payments, self.payments_url.clone()),
        ]);
        s.retry = RetryPolicy {
            max_attempts: self.max_attempts,
            base_delay: Duration::from_millis(self.retry_base_ms),
        };
        s.relay.lease = Duration::from_secs(self.outbox_lease_secs.max(1));
        s.http.request_timeout = Duration::from_secs(self.request_timeout_secs.max(1));
        s.orders.default_currency = Currency::parse(&self.currency).map_err(|_| {
            anyhow::anyhow!(
                "--currency {} is not a supported ISO 4217 code",
                self.currency
            )
        })?;
        s.payments = kassa_payments::Config {
            provider: Arc::new(SimulatedGateway::new(SimulatedSettings {
                latency: Duration::from_millis(self.provider_latency_ms),
                decline_rate: self.provider_decline_rate,
            })),
            processor: ProcessorSettings {
                max_in_flight: self.payments_in_flight,
                lease: Duration::from_secs(self.payment_lease_secs.max(1)),
                ..ProcessorSettings::default()
            },
        };
        Ok(s)
    }

    fn init_logs(&self) {
        kassa_platform::telemetry::init(self.log_format.eq_ignore_ascii_case("json"));
    }
}

fn print_addresses(running: &kassa::Running) {
    for (service, addr) in &running.addrs {
        println!(
            "{:<9} http://{addr}  (Swagger UI: http://{addr}/swagger)",
            service.as_str()
        );
    }
}

fn consumers(only: Option<ServiceName>) -> Vec<ServiceName> {
    match only {
        Some(s) => vec![s],
        None => ServiceName::WITH_STORAGE.to_vec(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Up { common, embedded } => {
            common.init_logs();
            let settings = common.settings(Infrastructure::Embedded {
                data_dir: embedded.data_dir.clone(),
            })?;
            let running = kassa::start(settings, &ServiceName::ALL).await?;
            println!(
                "kassa is up (embedded: data in {}). Ctrl-C stops it.",
                embedded.data_dir.display()
            );
            print_addresses(&running);
            running.until_signalled().await;
        }
        Command::Serve {
            mut services,
            common,
            distributed,
        } => {
            common.init_logs();
            services.sort();
            services.dedup();
            let settings = common.settings(distributed.infrastructure()?)?;
            let running = kassa::start(settings, &services).await?;
            print_addresses(&running);
            running.until_signalled().await;
        }
        Command::Migrate { common, target } => {
            common.init_logs();
            let settings = common.settings(target.infrastructure()?)?;
            for service in ServiceName::WITH_STORAGE {
                let db = kassa::app::open_database(&settings, service).await?;
                db.close().await;
                println!("{}: schema up to date", service.as_str());
            }
        }
        Command::Dlq { action } => match action {
            DlqAction::List {
                common,
                target,
                consumer,
                json,
            } => {
                common.init_logs();
                let settings = common.settings(target.infrastructure()?)?;
                let letters = dlq::list(&settings, &consumers(consumer)).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&letters)?);
                } else if letters.is_empty() {
                    println!("no dead letters");
                } else {
                    for l in &letters {
                        println!(
                            "{}  {}  {}  attempts={}  error={}",
                            l.queue,
                            l.id.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
                            l.topic,
                            l.attempts,
                            l.error
                        );
                        println!("    {}", l.body);
                    }
                }
            }
            DlqAction::Redrive {
                common,
                target,
                consumer,
            } => {
                common.init_logs();
                let settings = common.settings(target.infrastructure()?)?;
                let moved = dlq::redrive(&settings, &consumers(consumer)).await?;
                println!("redrove {moved} message(s)");
            }
        },
        Command::Bench {
            url,
            orders,
            concurrency,
            rate,
            amount,
            settle_timeout,
            pgbench,
            json,
        } => {
            let report = bench::run(BenchOptions {
                url,
                orders,
                concurrency,
                rate,
                amount,
                settle_timeout: Duration::from_secs(settle_timeout),
                progress: !json,
                pgbench,
            })
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                report.print();
            }
        }
    }
    Ok(())
}
