//! The `kassa` command line: run every service at once (`up`), run some of them against shared
//! infrastructure (`serve`), migrate, inspect dead letters, and benchmark.

use std::{collections::HashMap, net::IpAddr, path::PathBuf, time::Duration};

use anyhow::Context;
use clap::{
    Arg, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand,
    builder::PossibleValuesParser,
};
use kassa::{
    Settings,
    bench::{self, BenchOptions},
    dlq, registry,
    settings::{self, Broker, Infrastructure},
};
use kassa_platform::{
    bus::{RetryPolicy, kafka::KafkaSettings},
    service::{Options, Service, TaskInput},
};

const ABOUT: &str = "kassa: an event-driven order and payment platform.

Two ways to run the same services:
  kassa up                     every service in one process, each on its own port, with one
                               SQLite file per service under ./data, the in-process event bus
                               and an in-memory cache. Nothing to install or configure.
  kassa serve orders payments  the named services in this process against PostgreSQL (one
                               database per service, created if missing), RabbitMQ (or Kafka
                               with KASSA_BUS=kafka) and Redis.
                               Run as many replicas of a service as you like.

Every option can also be set by the environment variable shown with it. The seeds' names are
understood too: ConnectionStrings__PostgreSQL (Host=…;Port=…;Database=…;Username=…;Password=…),
RabbitMQ__HostName (with RabbitMQ__UserName, RabbitMQ__Password, RabbitMQ__Port), and
ConnectionStrings__Redis (host:port).

Each service also has --<service>-port (KASSA_<SERVICE>_PORT), --<service>-url
(KASSA_<SERVICE>_URL: where the gateway reaches it when it runs elsewhere) and
--<service>-database-url (KASSA_<SERVICE>_DATABASE_URL: its database named outright).";

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
        #[arg(required = true, value_parser = PossibleValuesParser::new(registry::names()))]
        services: Vec<String>,
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
        /// Run this many rounds of `-n` orders against the same process (a soak), printing each
        /// round's throughput, p99 and the server's RSS, then how the last compares to the first.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        rounds: u32,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// The API key it calls with (`kassa keys create --role kiosk --name bench`; an admin's
        /// key also reads the server's memory from `/metrics`).
        #[arg(long, env = "KASSA_BENCH_KEY", hide_env_values = true)]
        key: Option<String>,
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
        #[arg(long, value_parser = consumer_names())]
        consumer: Option<String>,
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
        #[arg(long, value_parser = consumer_names())]
        consumer: Option<String>,
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
    /// Seconds before a request is answered 503.
    #[arg(
        long,
        env = "KASSA_REQUEST_TIMEOUT_SECS",
        default_value_t = 30,
        global = true
    )]
    request_timeout_secs: u64,
    /// Seconds a connection has to send a request's head (and an idle keep-alive connection
    /// its next one) before it is closed.
    #[arg(
        long,
        env = "KASSA_HEADER_READ_TIMEOUT_SECS",
        default_value_t = 10,
        global = true
    )]
    header_read_timeout_secs: u64,
    /// Connections each service's listener holds at once; more wait until one closes.
    #[arg(
        long,
        env = "KASSA_MAX_CONNECTIONS",
        default_value_t = 4096,
        global = true
    )]
    max_connections: usize,
    /// Requests each service works on at once; more are answered 503 with Retry-After.
    #[arg(
        long,
        env = "KASSA_MAX_REQUESTS_IN_FLIGHT",
        default_value_t = 1024,
        global = true
    )]
    max_requests_in_flight: usize,
    /// Web origins whose pages may call the API from a browser, cookies included
    /// (comma-separated: https://shop.example,http://localhost:5173); none: only the API's own.
    #[arg(long, env = "KASSA_CORS_ORIGINS", value_delimiter = ',', global = true)]
    cors_origins: Vec<String>,
    /// Log format: text or json.
    #[arg(long, env = "KASSA_LOG_FORMAT", default_value = "text", global = true)]
    log_format: String,
    /// Secret that signs and checks access tokens, at least 32 bytes, the same in every
    /// process (embedded: made once and kept in the data folder when not given).
    #[arg(
        long,
        env = "KASSA_TOKEN_SECRET",
        global = true,
        hide_env_values = true
    )]
    token_secret: Option<String>,
    /// Route groups opened to callers with no credential, for a seed's clients that send none
    /// (seed000, seed001, seed002, seed003); they still see only what no one owns. See
    /// docs/security.md for what each exposes.
    #[arg(long, env = "KASSA_OPEN_ROUTES", value_delimiter = ',', global = true)]
    open_routes: Vec<String>,
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
    #[arg(long, env = "KASSA_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// The message broker: rabbitmq or kafka (kafka needs a binary built with `--features
    /// kafka`).
    #[arg(long, env = "KASSA_BUS", default_value = "rabbitmq", value_parser = ["rabbitmq", "kafka"])]
    bus: String,
    /// RabbitMQ.
    #[arg(long, env = "KASSA_AMQP_URL", hide_env_values = true)]
    amqp_url: Option<String>,
    /// Kafka brokers, `host:port[,host:port…]` (also read from `Kafka__BootstrapServers`).
    #[arg(long, env = "KASSA_KAFKA_BROKERS")]
    kafka_brokers: Option<String>,
    /// The Kafka topic of order events (also read from `Kafka__OrderTopic`).
    #[arg(long, env = "KASSA_KAFKA_ORDER_TOPIC")]
    kafka_order_topic: Option<String>,
    /// The Kafka topic of payment events (also read from `Kafka__PaymentTopic`).
    #[arg(long, env = "KASSA_KAFKA_PAYMENT_TOPIC")]
    kafka_payment_topic: Option<String>,
    /// Partitions of each Kafka topic kassa creates.
    #[arg(long, env = "KASSA_KAFKA_PARTITIONS", default_value_t = 6, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    kafka_partitions: i32,
    /// Replicas of each Kafka topic kassa creates (-1: the brokers' default).
    #[arg(long, env = "KASSA_KAFKA_REPLICATION", default_value_t = -1, value_parser = clap::value_parser!(i32).range(-1..=100))]
    kafka_replication: i32,
    /// Redis.
    #[arg(long, env = "KASSA_REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// Connections per service database.
    #[arg(long, env = "KASSA_DB_MAX_CONNECTIONS", default_value_t = 16)]
    db_max_connections: u32,
    /// Unacknowledged messages per consumer (RabbitMQ), or records waiting per partition before
    /// reading waits for them (Kafka).
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

    fn infrastructure(&self, per_service: &PerService) -> anyhow::Result<Infrastructure> {
        let database_url = self
            .database_url()?
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let broker = if self.bus == "kafka" {
            self.kafka()
        } else {
            self.rabbit_mq()?
        };
        let redis_url = match (&self.redis_url, env("ConnectionStrings__Redis")) {
            (Some(url), _) => url.clone(),
            (None, Some(cs)) => settings::redis_url_from_connection_string(&cs)?,
            (None, None) => "redis://127.0.0.1:6379/".into(),
        };
        let database_overrides = per_service.databases.clone();
        Ok(Infrastructure::Distributed {
            database_url,
            database_overrides,
            broker,
            redis_url,
            max_connections: self.db_max_connections,
            prefetch: self.prefetch,
        })
    }

    fn kafka(&self) -> Broker {
        let brokers = self
            .kafka_brokers
            .clone()
            .or_else(|| env("Kafka__BootstrapServers"))
            .unwrap_or_else(|| "127.0.0.1:9092".into());
        let mut kafka = KafkaSettings::new(&brokers);
        kafka.partitions = self.kafka_partitions;
        kafka.replication = self.kafka_replication;
        for (word, flag, seed) in [
            ("order", &self.kafka_order_topic, "Kafka__OrderTopic"),
            ("payment", &self.kafka_payment_topic, "Kafka__PaymentTopic"),
        ] {
            if let Some(name) = flag.clone().or_else(|| env(seed)) {
                kafka.topics.insert(word.into(), name);
            }
        }
        Broker::Kafka(kafka)
    }

    fn rabbit_mq(&self) -> anyhow::Result<Broker> {
        let url = match (&self.amqp_url, env("RabbitMQ__HostName")) {
            (Some(url), _) => url.clone(),
            (None, Some(host)) => settings::amqp_url_from_host(
                &host,
                env("RabbitMQ__UserName").as_deref(),
                env("RabbitMQ__Password").as_deref(),
                env("RabbitMQ__Port").as_deref(),
            )?,
            (None, None) => "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
        };
        Ok(Broker::RabbitMq { url })
    }
}

impl Target {
    fn infrastructure(&self, per_service: &PerService) -> anyhow::Result<Infrastructure> {
        if self.distributed.database_url()?.is_some() {
            self.distributed.infrastructure(per_service)
        } else {
            Ok(Infrastructure::Embedded {
                data_dir: self.embedded.data_dir.clone(),
            })
        }
    }
}

impl Common {
    fn settings(
        &self,
        infrastructure: Infrastructure,
        per_service: &PerService,
    ) -> anyhow::Result<Settings> {
        anyhow::ensure!(self.max_attempts >= 1, "--max-attempts must be at least 1");
        let mut s = Settings::embedded(PathBuf::from("./data"));
        s.infrastructure = infrastructure;
        s.namespace = self.namespace.clone();
        s.host = self.host;
        s.ports
            .extend(per_service.ports.iter().map(|(k, v)| (*k, *v)));
        s.upstream_urls = per_service.urls.clone();
        s.options = per_service.options.clone();
        s.retry = RetryPolicy {
            max_attempts: self.max_attempts,
            base_delay: Duration::from_millis(self.retry_base_ms),
        };
        s.http.request_timeout = Duration::from_secs(self.request_timeout_secs.max(1));
        s.http.header_read_timeout = Duration::from_secs(self.header_read_timeout_secs.max(1));
        s.http.max_connections = self.max_connections.max(1);
        s.http.max_in_flight = self.max_requests_in_flight.max(1);
        s.http.cors_origins = self.cors_origins.clone();
        s.http.tokens = settings::token_secret(self.token_secret.as_deref(), &s.infrastructure)?;
        s.http.open_routes = settings::open_routes(&self.open_routes)?;
        Ok(s)
    }

    fn init_logs(&self) {
        kassa_platform::telemetry::init(self.log_format.eq_ignore_ascii_case("json"));
    }
}

fn print_addresses(running: &kassa::Running) {
    for service in registry::SERVICES {
        if let Some(addr) = running.addrs.get(service.name) {
            println!(
                "{:<9} http://{addr}  (Swagger UI: http://{addr}/swagger)",
                service.name
            );
        }
    }
}

fn consumer_names() -> PossibleValuesParser {
    PossibleValuesParser::new(registry::consumers().map(|s| s.name).collect::<Vec<_>>())
}

/// The consumers `--consumer` names, or all of them.
fn consumers(only: Option<String>) -> Vec<&'static Service> {
    registry::consumers()
        .filter(|s| only.as_deref().is_none_or(|name| s.name == name))
        .collect()
}

/// The services named on the command line (clap has checked the names).
fn named(names: &[String]) -> anyhow::Result<Vec<&'static Service>> {
    names
        .iter()
        .map(|n| registry::find(n).with_context(|| format!("no service is named {n}")))
        .collect()
}

/// What the command line and the environment say about each service, under flags derived from
/// the registry: its port, where it is reached, its database, and its own settings.
#[derive(Default)]
struct PerService {
    ports: HashMap<&'static str, u16>,
    urls: HashMap<&'static str, String>,
    databases: HashMap<&'static str, String>,
    options: Options,
}

fn flag(text: String) -> Arg {
    Arg::new(text.clone()).long(text).global(true)
}

/// The flags every service brings.
fn per_service_args() -> Vec<Arg> {
    let mut args = Vec::new();
    for s in registry::SERVICES {
        args.push(
            flag(format!("{}-port", s.name))
                .value_name("PORT")
                .env(s.env("PORT"))
                .value_parser(clap::value_parser!(u16))
                .default_value(s.default_port.to_string())
                .help(format!("Port of {} (0 picks a free one)", s.name)),
        );
        if !s.routes.is_empty() {
            args.push(
                flag(format!("{}-url", s.name))
                    .value_name("URL")
                    .env(s.env("URL"))
                    .default_value(format!("http://127.0.0.1:{}", s.default_port))
                    .help(format!(
                        "Where the gateway reaches {} when it runs in another process",
                        s.name
                    )),
            );
        }
        if s.has_storage() {
            args.push(
                flag(format!("{}-database-url", s.name))
                    .value_name("URL")
                    .env(s.env("DATABASE_URL"))
                    .hide_env_values(true)
                    .help(format!(
                        "The PostgreSQL database of {}, named outright (default: <namespace>_{} on --database-url)",
                        s.name, s.name
                    )),
            );
        }
        for setting in s.settings {
            args.push(
                flag(setting.name.to_owned())
                    .value_name("VALUE")
                    .env(setting.env())
                    .hide_env_values(setting.secret)
                    .default_value(setting.default)
                    .help(setting.help),
            );
        }
    }
    args
}

fn read_per_service(mut matches: &ArgMatches) -> anyhow::Result<PerService> {
    // Global flags are propagated down; the innermost command has them all.
    while let Some((_, sub)) = matches.subcommand() {
        matches = sub;
    }
    // A service declares only some of the flags: an id it lacks reads as none.
    let text = |id: String| matches.try_get_one::<String>(&id).ok().flatten().cloned();
    let mut out = PerService::default();
    for s in registry::SERVICES {
        if let Ok(Some(port)) = matches.try_get_one::<u16>(&format!("{}-port", s.name)) {
            out.ports.insert(s.name, *port);
        }
        if let Some(url) = text(format!("{}-url", s.name)) {
            out.urls.insert(s.name, url);
        }
        if let Some(url) = text(format!("{}-database-url", s.name)).filter(|u| !u.trim().is_empty())
        {
            out.databases.insert(s.name, url);
        }
        for setting in s.settings {
            if let Some(value) = text(setting.name.to_owned()) {
                out.options.set(setting.name, value);
            }
        }
    }
    Ok(out)
}

/// Every service's operator tasks, with the service whose database each runs on.
fn all_tasks() -> impl Iterator<Item = (&'static Service, &'static kassa_platform::service::Task)> {
    registry::SERVICES
        .iter()
        .flat_map(|s| s.tasks.iter().map(move |t| (*s, t)))
}

/// `kassa <group> <task>` for every operator task (`kassa keys create`).
fn task_commands(mut cli: clap::Command) -> clap::Command {
    let mut groups: Vec<&str> = all_tasks().map(|(_, t)| t.command[0]).collect();
    groups.sort();
    groups.dedup();
    for group in groups {
        let names: Vec<&str> = all_tasks()
            .filter(|(_, t)| t.command[0] == group)
            .map(|(_, t)| t.command[1])
            .collect();
        let mut command = clap::Command::new(group)
            .about(format!("Operator commands: {group} {}", names.join(", ")))
            .subcommand_required(true);
        for (_, t) in all_tasks().filter(|(_, t)| t.command[0] == group) {
            let mut task = clap::Command::new(t.command[1]).about(t.help);
            for arg in t.args {
                let mut a = clap::Arg::new(arg.name).help(arg.help).required(true);
                if !arg.positional {
                    a = a.long(arg.name);
                }
                task = task.arg(a);
            }
            command = command.subcommand(Target::augment_args(Common::augment_args(task)));
        }
        cli = cli.subcommand(command);
    }
    cli
}

async fn run_task(
    group: &str,
    matches: &ArgMatches,
    per_service: &PerService,
) -> anyhow::Result<()> {
    let (name, matches) = matches.subcommand().context("name a task")?;
    let (service, task) = all_tasks()
        .find(|(_, t)| t.command == [group, name])
        .with_context(|| format!("there is no command `{group} {name}`"))?;
    let common = Common::from_arg_matches(matches)?;
    let target = Target::from_arg_matches(matches)?;
    common.init_logs();
    let settings = common.settings(target.infrastructure(per_service)?, per_service)?;
    let db = kassa::app::open_database(&settings, service).await?;
    let args = task
        .args
        .iter()
        .filter_map(|a| {
            Some((
                a.name.to_owned(),
                matches.get_one::<String>(a.name)?.clone(),
            ))
        })
        .collect();
    let said = (task.run)(TaskInput {
        db: db.clone(),
        options: settings.options.clone(),
        args,
    })
    .await;
    db.close().await;
    println!("{}", said?);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // What kassa writes (SQLite files, the token secret, emails on disk) is its own alone.
    settings::private_files();
    // `KASSA_…_FILE` for every secret setting, read while this process has one thread (setting
    // the environment is sound only then), and before the command line is made again to be
    // parsed: clap reads an argument's variable when the argument is made.
    let secrets =
        settings::secrets_from_files(&secret_variables(&command()), |name| std::env::var_os(name))?;
    for (name, value) in secrets {
        // SAFETY: no other thread runs yet: the runtime is built below.
        unsafe { std::env::set_var(name, value) };
    }
    let matches = command().get_matches();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(matches))
}

/// The whole command line: kassa's own flags, every service's, and the services' tasks.
fn command() -> clap::Command {
    per_service_args()
        .into_iter()
        .fold(task_commands(Cli::command()), |cmd, arg| cmd.arg(arg))
}

/// The environment variables of every setting whose value `--help` hides: the secrets.
fn secret_variables(command: &clap::Command) -> Vec<String> {
    let mut names: Vec<String> = command
        .get_arguments()
        .filter(|arg| arg.is_hide_env_values_set())
        .filter_map(|arg| arg.get_env()?.to_str().map(str::to_owned))
        .collect();
    for sub in command.get_subcommands() {
        names.extend(secret_variables(sub));
    }
    names.sort();
    names.dedup();
    names
}

async fn run(matches: ArgMatches) -> anyhow::Result<()> {
    kassa_platform::http::https_ready();
    let per_service = read_per_service(&matches)?;
    if let Some((name, sub)) = matches.subcommand()
        && all_tasks().any(|(_, t)| t.command[0] == name)
    {
        return run_task(name, sub, &per_service).await;
    }
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Up { common, embedded } => {
            common.init_logs();
            let mut settings = common.settings(
                Infrastructure::Embedded {
                    data_dir: embedded.data_dir.clone(),
                },
                &per_service,
            )?;
            settings::keep_private(&embedded.data_dir)?;
            // Emails with no mail server go beside the data.
            let mail_dir: String = settings.options.get(&kassa_notifications::MAIL_DIR)?;
            if mail_dir.is_empty() {
                let dir = embedded.data_dir.join("mail");
                settings.options.set("mail-dir", dir.display().to_string());
            }
            let running = kassa::start(settings, registry::SERVICES).await?;
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
            let settings =
                common.settings(distributed.infrastructure(&per_service)?, &per_service)?;
            let running = kassa::start(settings, &named(&services)?).await?;
            print_addresses(&running);
            running.until_signalled().await;
        }
        Command::Migrate { common, target } => {
            common.init_logs();
            let settings = common.settings(target.infrastructure(&per_service)?, &per_service)?;
            if let Infrastructure::Embedded { data_dir } = &settings.infrastructure {
                settings::keep_private(data_dir)?;
            }
            for service in registry::with_storage() {
                let db = kassa::app::open_database(&settings, service).await?;
                db.close().await;
                println!("{}: schema up to date", service.name);
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
                let settings =
                    common.settings(target.infrastructure(&per_service)?, &per_service)?;
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
                let settings =
                    common.settings(target.infrastructure(&per_service)?, &per_service)?;
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
            rounds,
            json,
            key,
        } => {
            let options = BenchOptions {
                key,
                url,
                orders,
                concurrency,
                rate,
                amount,
                settle_timeout: Duration::from_secs(settle_timeout),
                progress: !json,
                pgbench,
            };
            if rounds > 1 {
                let report = bench::soak(options, rounds as usize, |n, round| {
                    if !json {
                        round.print_round(n);
                    }
                })
                .await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    report.print_summary();
                }
            } else {
                let report = bench::run(options).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    report.print();
                }
            }
        }
    }
    Ok(())
}
