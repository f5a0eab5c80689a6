//! How kassa is configured: flags and `KASSA_*` environment variables (see `kassa --help`), plus
//! the seeds' own names (`ConnectionStrings__PostgreSQL`, `RabbitMQ__HostName`,
//! `ConnectionStrings__Redis`, `Kafka__BootstrapServers`) in their documented formats.

use std::{collections::HashMap, net::IpAddr, path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use kassa_platform::{
    bus::{RetryPolicy, kafka::KafkaSettings},
    db::DbLocation,
    http::HttpSettings,
    outbox::RelaySettings,
    service::{Options, Service},
};

use crate::registry;

/// Where the services keep their data and send their events. Its `Debug` hides the URLs'
/// passwords.
#[derive(Clone)]
pub enum Infrastructure {
    /// One SQLite file per service under `data_dir`, the in-process bus, the in-memory cache.
    Embedded { data_dir: PathBuf },
    /// PostgreSQL (a database per service), RabbitMQ or Kafka, and Redis.
    Distributed {
        database_url: String,
        /// Services whose database is named explicitly (`KASSA_<SERVICE>_DATABASE_URL`).
        database_overrides: HashMap<&'static str, String>,
        broker: Broker,
        redis_url: String,
        max_connections: u32,
        prefetch: u16,
    },
}

/// The message broker of the distributed mode.
#[derive(Clone)]
pub enum Broker {
    /// RabbitMQ at this AMQP URL (the default).
    RabbitMq { url: String },
    /// Kafka (`KASSA_BUS=kafka`; the binary must be built with the `kafka` feature).
    Kafka(KafkaSettings),
}

impl std::fmt::Debug for Infrastructure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use kassa_platform::redact;
        match self {
            Infrastructure::Embedded { data_dir } => f
                .debug_struct("Embedded")
                .field("data_dir", data_dir)
                .finish(),
            Infrastructure::Distributed {
                database_url,
                database_overrides,
                broker,
                redis_url,
                max_connections,
                prefetch,
            } => {
                let overrides: HashMap<_, _> = database_overrides
                    .iter()
                    .map(|(service, url)| (*service, redact::url(url)))
                    .collect();
                f.debug_struct("Distributed")
                    .field("database_url", &redact::url(database_url))
                    .field("database_overrides", &overrides)
                    .field("broker", broker)
                    .field("redis_url", &redact::url(redis_url))
                    .field("max_connections", max_connections)
                    .field("prefetch", prefetch)
                    .finish()
            }
        }
    }
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Broker::RabbitMq { url } => f
                .debug_struct("RabbitMq")
                .field("url", &kassa_platform::redact::url(url))
                .finish(),
            Broker::Kafka(settings) => f.debug_tuple("Kafka").field(settings).finish(),
        }
    }
}

/// Everything a kassa process needs to know.
#[derive(Clone)]
pub struct Settings {
    pub infrastructure: Infrastructure,
    /// Prefix of database names, queues, exchanges and cache keys, so that several kassa
    /// installations (or test runs) share servers without meeting.
    pub namespace: String,
    pub host: IpAddr,
    /// The port of each service, by name (0 picks a free one).
    pub ports: HashMap<&'static str, u16>,
    /// Where the gateway finds services that do not run in its process, by name.
    pub upstream_urls: HashMap<&'static str, String>,
    pub retry: RetryPolicy,
    pub relay: RelaySettings,
    pub http: HttpSettings,
    /// The values of the services' own settings.
    pub options: Options,
}

impl Settings {
    /// The embedded defaults with data under `data_dir`.
    pub fn embedded(data_dir: PathBuf) -> Self {
        Settings {
            infrastructure: Infrastructure::Embedded { data_dir },
            namespace: "kassa".into(),
            host: IpAddr::from([127, 0, 0, 1]),
            ports: registry::SERVICES
                .iter()
                .map(|s| (s.name, s.default_port))
                .collect(),
            upstream_urls: HashMap::new(),
            retry: RetryPolicy::default(),
            relay: RelaySettings::default(),
            http: HttpSettings::default(),
            options: Options::default(),
        }
    }

    pub fn is_embedded(&self) -> bool {
        matches!(self.infrastructure, Infrastructure::Embedded { .. })
    }

    /// Where `service` keeps its data.
    pub fn database(&self, service: &Service) -> anyhow::Result<DbLocation> {
        match &self.infrastructure {
            Infrastructure::Embedded { data_dir } => Ok(DbLocation::Sqlite {
                path: kassa_platform::db::sqlite_path(data_dir, service.name),
            }),
            Infrastructure::Distributed {
                database_url,
                database_overrides,
                max_connections,
                ..
            } => {
                let url = match database_overrides.get(service.name) {
                    Some(url) => url.clone(),
                    None => with_database(
                        database_url,
                        &format!("{}_{}", self.namespace, service.name),
                    )?,
                };
                Ok(DbLocation::Postgres {
                    url,
                    max_connections: *max_connections,
                })
            }
        }
    }

    pub fn port(&self, service: &Service) -> u16 {
        self.ports
            .get(service.name)
            .copied()
            .unwrap_or(service.default_port)
    }

    /// Where `service` is reached when it runs in another process.
    pub fn upstream_url(&self, service: &Service) -> String {
        self.upstream_urls
            .get(service.name)
            .cloned()
            .unwrap_or_else(|| format!("http://127.0.0.1:{}", service.default_port))
    }
}

/// The route groups the operator opens to anonymous callers (`KASSA_OPEN_ROUTES`): each must be
/// a group some route is in, so that a misspelt one is not silently nothing.
pub fn open_routes(groups: &[String]) -> anyhow::Result<kassa_platform::access::OpenGroups> {
    let known: std::collections::BTreeSet<&str> = crate::registry::SERVICES
        .iter()
        .flat_map(|s| s.access.iter().flat_map(|rules| rules.iter()))
        .filter_map(|rule| rule.group)
        .collect();
    let mut open = Vec::new();
    for group in groups.iter().map(|g| g.trim().to_ascii_lowercase()) {
        if group.is_empty() {
            continue;
        }
        if !known.contains(group.as_str()) {
            anyhow::bail!(
                "KASSA_OPEN_ROUTES: `{group}` is no route group; the groups are {}",
                known.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
        open.push(group);
    }
    open.sort();
    open.dedup();
    Ok(kassa_platform::access::OpenGroups(open))
}

/// The token secret: the one given, else (embedded) the one kept in the data folder, made
/// there on first start; a distributed process given none accepts no token.
pub fn token_secret(
    given: Option<&str>,
    infrastructure: &Infrastructure,
) -> anyhow::Result<Option<kassa_platform::auth::Secret>> {
    use kassa_platform::auth::Secret;
    if let Some(text) = given.filter(|t| !t.is_empty()) {
        return Secret::new(text)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("--token-secret (KASSA_TOKEN_SECRET): {e}"));
    }
    let Infrastructure::Embedded { data_dir } = infrastructure else {
        return Ok(None);
    };
    let path = data_dir.join("token-secret");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => {
            refuse_if_shared(&path)?;
            text
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("creating {}", data_dir.display()))?;
            let text = Secret::generate();
            write_private(&path, &text)?;
            text
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    Secret::new(text.trim())
        .map(Some)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Refuses a token secret that others than its owner may read: whoever read it can sign tokens
/// for anyone, admins included, so tightening its mode now would not undo that.
fn refuse_if_shared(path: &std::path::Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("reading {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            bail!(
                "{} may be read by others than its owner (mode {:o}): whoever read it can sign \
                 tokens as anyone. Delete it to have a new one made (everyone signs in again), \
                 or, if no one can have read it, `chmod 600` it.",
                path.display(),
                mode & 0o777
            );
        }
    }
    Ok(())
}

/// Makes what this process creates from now on readable and writable by its owner only (the
/// umask 077): SQLite's files, the token secret, emails written to disk.
pub fn private_files() {
    #[cfg(unix)]
    // SAFETY: umask only sets the process's file creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// Takes away what others than its owner may do with the data folder and its files, made by an
/// earlier version or by hand with a looser mode; says so for each one changed.
pub fn keep_private(data_dir: &std::path::Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fn tighten(path: &std::path::Path, private: u32) -> anyhow::Result<()> {
            let meta = std::fs::symlink_metadata(path)
                .with_context(|| format!("reading {}", path.display()))?;
            if meta.file_type().is_symlink() {
                return Ok(());
            }
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & private))
                    .with_context(|| format!("making {} private", path.display()))?;
                tracing::warn!(
                    path = %path.display(),
                    was = format!("{mode:o}"),
                    now = format!("{:o}", mode & private),
                    "others than its owner could read or change this; they no longer can"
                );
            }
            if meta.is_dir() {
                for entry in std::fs::read_dir(path)
                    .with_context(|| format!("reading {}", path.display()))?
                {
                    let entry = entry?.path();
                    let private = if entry.is_dir() { 0o700 } else { 0o600 };
                    tighten(&entry, private)?;
                }
            }
            Ok(())
        }
        if data_dir.exists() {
            tighten(data_dir, 0o700)?;
        }
    }
    Ok(())
}

/// The secrets given in files: for each variable in `secrets` that is not set, the content of
/// the file `<variable>_FILE` names (as container platforms hand secrets over), without its
/// trailing newline. A variable set both ways, or a file that cannot be read, is an error that
/// names the variable and the file, never the secret.
pub fn secrets_from_files(
    secrets: &[String],
    get: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut found = Vec::new();
    for name in secrets {
        let file_variable = format!("{name}_FILE");
        let Some(file) = get(&file_variable).filter(|f| !f.is_empty()) else {
            continue;
        };
        if get(name).is_some() {
            bail!("{name} and {file_variable} are both set: give the secret one way");
        }
        let path = std::path::PathBuf::from(file);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{file_variable}: reading {} (it must be a UTF-8 text file)",
                path.display()
            )
        })?;
        let value = text.strip_suffix('\n').unwrap_or(&text);
        let value = value.strip_suffix('\r').unwrap_or(value);
        if value.is_empty() {
            bail!("{file_variable}: {} is empty", path.display());
        }
        found.push((name.clone(), value.to_owned()));
    }
    Ok(found)
}

/// Writes `text` to a new file only its owner can read.
fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// `url` with its database (path) replaced by `database`.
pub fn with_database(url: &str, database: &str) -> anyhow::Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base
        .find("://")
        .context("a PostgreSQL URL starts with postgres://")?
        + 3;
    let authority_end = base[scheme_end..]
        .find('/')
        .map(|i| i + scheme_end)
        .unwrap_or(base.len());
    let mut out = format!("{}/{database}", &base[..authority_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

/// Reads `Host=…;Port=…;Database=…;Username=…;Password=…` (the .NET connection string of the
/// seeds) as a PostgreSQL URL.
pub fn postgres_url_from_connection_string(text: &str) -> anyhow::Result<String> {
    let mut fields = HashMap::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .with_context(|| format!("`{part}` is not key=value"))?;
        fields.insert(
            k.trim().to_ascii_lowercase().replace(' ', ""),
            v.trim().to_owned(),
        );
    }
    let host = fields
        .get("host")
        .or(fields.get("server"))
        .context("the connection string names no Host")?;
    let port = fields.get("port").map(String::as_str).unwrap_or("5432");
    let user = fields
        .get("username")
        .or(fields.get("userid"))
        .or(fields.get("user"));
    let password = fields.get("password");
    let database = fields
        .get("database")
        .map(String::as_str)
        .unwrap_or("postgres");
    let auth = match (user, password) {
        (Some(u), Some(p)) => format!("{}:{}@", encode(u), encode(p)),
        (Some(u), None) => format!("{}@", encode(u)),
        _ => String::new(),
    };
    Ok(format!("postgres://{auth}{host}:{port}/{database}"))
}

/// Reads `host:port` (or `host:port,password=…`, StackExchange.Redis style) as a Redis URL.
pub fn redis_url_from_connection_string(text: &str) -> anyhow::Result<String> {
    let mut parts = text.split(',').map(str::trim);
    let endpoint = parts
        .next()
        .filter(|e| !e.is_empty())
        .context("the Redis connection string names no host")?;
    let password = parts
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("password"))
        .map(|(_, v)| v.trim());
    let endpoint = if endpoint.contains(':') {
        endpoint.to_owned()
    } else {
        format!("{endpoint}:6379")
    };
    Ok(match password {
        Some(p) => format!("redis://:{}@{endpoint}/", encode(p)),
        None => format!("redis://{endpoint}/"),
    })
}

/// An AMQP URL for a RabbitMQ host name, with the seeds' optional user, password and port.
pub fn amqp_url_from_host(
    host: &str,
    user: Option<&str>,
    password: Option<&str>,
    port: Option<&str>,
) -> anyhow::Result<String> {
    if host.trim().is_empty() {
        bail!("RabbitMQ__HostName is empty");
    }
    Ok(format!(
        "amqp://{}:{}@{}:{}/%2f",
        encode(user.unwrap_or("guest")),
        encode(password.unwrap_or("guest")),
        host.trim(),
        port.unwrap_or("5672")
    ))
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Parses a duration in milliseconds from a flag.
pub fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_embedded_installation_keeps_the_token_secret_it_made() {
        let data_dir = std::env::temp_dir().join(format!("kassa-secret-{}", uuid::Uuid::now_v7()));
        let embedded = Infrastructure::Embedded {
            data_dir: data_dir.join("data"),
        };
        let first = token_secret(None, &embedded).unwrap().expect("made");
        let again = token_secret(None, &embedded).unwrap().expect("kept");
        let claims = kassa_platform::auth::Claims::new(
            uuid::Uuid::now_v7(),
            "a@example.com",
            kassa_platform::auth::Role::Customer,
            chrono::Utc::now(),
            chrono::Duration::hours(1),
        );
        // A token from before a restart still checks.
        let token = kassa_platform::auth::issue(&first, &claims);
        assert!(kassa_platform::auth::verify(&again, &token, chrono::Utc::now()).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(data_dir.join("data/token-secret"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(token_secret(Some("short"), &embedded).is_err());
        let distributed = Infrastructure::Distributed {
            database_url: String::new(),
            database_overrides: HashMap::new(),
            broker: Broker::RabbitMq { url: String::new() },
            redis_url: String::new(),
            max_connections: 1,
            prefetch: 1,
        };
        assert!(token_secret(None, &distributed).unwrap().is_none());
        std::fs::remove_dir_all(&data_dir).ok();
    }

    #[test]
    fn secrets_are_read_from_the_files_their_variables_name() {
        let dir = std::env::temp_dir().join(format!("kassa-files-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("stripe");
        std::fs::write(&key, "sk_test_123\n").unwrap();
        let names = vec![
            "KASSA_STRIPE_SECRET_KEY".to_owned(),
            "KASSA_AMQP_URL".to_owned(),
        ];
        fn env(
            vars: Vec<(&'static str, std::path::PathBuf)>,
        ) -> impl Fn(&str) -> Option<std::ffi::OsString> {
            move |name| {
                vars.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.clone().into_os_string())
            }
        }
        let found = secrets_from_files(
            &names,
            env(vec![("KASSA_STRIPE_SECRET_KEY_FILE", key.clone())]),
        )
        .unwrap();
        assert_eq!(
            found,
            vec![(
                "KASSA_STRIPE_SECRET_KEY".to_owned(),
                "sk_test_123".to_owned()
            )]
        );
        // Both ways at once, a missing file, an empty file: refused, naming the variable only.
        let both = secrets_from_files(
            &names,
            env(vec![
                ("KASSA_STRIPE_SECRET_KEY_FILE", key.clone()),
                ("KASSA_STRIPE_SECRET_KEY", "sk_live_SHOWN".into()),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            both.contains("both set") && !both.contains("SHOWN"),
            "{both}"
        );
        let missing = format!(
            "{:#}",
            secrets_from_files(
                &names,
                env(vec![("KASSA_AMQP_URL_FILE", dir.join("absent"))])
            )
            .unwrap_err()
        );
        assert!(missing.contains("KASSA_AMQP_URL_FILE"), "{missing}");
        std::fs::write(dir.join("empty"), "\n").unwrap();
        assert!(
            secrets_from_files(
                &names,
                env(vec![("KASSA_AMQP_URL_FILE", dir.join("empty"))])
            )
            .is_err()
        );
        // A variable that is not a secret's has no file variant.
        assert!(
            secrets_from_files(&names, env(vec![("KASSA_NAMESPACE_FILE", key.clone())]))
                .unwrap()
                .is_empty()
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[cfg(unix)]
    #[test]
    fn a_token_secret_others_may_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let data_dir = std::env::temp_dir().join(format!("kassa-shared-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&data_dir).unwrap();
        let path = data_dir.join("token-secret");
        std::fs::write(&path, kassa_platform::auth::Secret::generate()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let embedded = Infrastructure::Embedded {
            data_dir: data_dir.clone(),
        };
        let refused = token_secret(None, &embedded).unwrap_err().to_string();
        assert!(refused.contains("mode 644"), "{refused}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(token_secret(None, &embedded).unwrap().is_some());
        std::fs::remove_dir_all(&data_dir).ok();
    }

    #[cfg(unix)]
    #[test]
    fn the_data_folder_is_made_private() {
        use std::os::unix::fs::PermissionsExt;
        let data_dir = std::env::temp_dir().join(format!("kassa-private-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(data_dir.join("mail")).unwrap();
        for file in ["users.db", "users.db-wal", "mail/1.eml"] {
            std::fs::write(data_dir.join(file), "x").unwrap();
            std::fs::set_permissions(data_dir.join(file), std::fs::Permissions::from_mode(0o644))
                .unwrap();
        }
        for dir in [data_dir.join("mail"), data_dir.clone()] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        keep_private(&data_dir).unwrap();
        let mode = |p: &str| {
            std::fs::metadata(data_dir.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(""), 0o700);
        assert_eq!(mode("mail"), 0o700);
        for file in ["users.db", "users.db-wal", "mail/1.eml"] {
            assert_eq!(mode(file), 0o600, "{file}");
        }
        std::fs::remove_dir_all(&data_dir).ok();
    }

    #[test]
    fn debug_output_hides_the_passwords_of_urls() {
        let distributed = Infrastructure::Distributed {
            database_url: "postgres://kassa:pg-SECRET@db/kassa".into(),
            database_overrides: HashMap::from([("orders", "postgres://o:o-SECRET@db/o".into())]),
            broker: Broker::RabbitMq {
                url: "amqp://kassa:mq-SECRET@mq:5672".into(),
            },
            redis_url: "redis://:redis-SECRET@cache:6379".into(),
            max_connections: 1,
            prefetch: 1,
        };
        let shown = format!("{distributed:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("postgres://kassa:***@db/kassa"), "{shown}");
    }

    #[test]
    fn reads_the_seeds_connection_strings() {
        assert_eq!(
            postgres_url_from_connection_string(
                "Host=db;Database=payments;Username=app;Password=p@ss"
            )
            .unwrap(),
            "postgres://app:p%40ss@db:5432/payments"
        );
        assert_eq!(
            redis_url_from_connection_string("localhost:6379").unwrap(),
            "redis://localhost:6379/"
        );
        assert_eq!(
            redis_url_from_connection_string("cache,password=x").unwrap(),
            "redis://:x@cache:6379/"
        );
        assert_eq!(
            amqp_url_from_host("rabbitmq", None, None, None).unwrap(),
            "amqp://guest:guest@rabbitmq:5672/%2f"
        );
        assert!(postgres_url_from_connection_string("Database=x").is_err());
    }

    #[test]
    fn each_service_gets_its_own_database() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "kassa_orders").unwrap(),
            "postgres://u@h:5432/kassa_orders"
        );
        assert_eq!(
            with_database("postgres://h", "x").unwrap(),
            "postgres://h/x"
        );
        assert_eq!(
            with_database("postgres://h/db?sslmode=disable", "x").unwrap(),
            "postgres://h/x?sslmode=disable"
        );
    }

    #[test]
    fn open_route_groups_are_known_ones() {
        let open = open_routes(&[" SEED001".into(), "seed003".into(), "seed001".into()]).unwrap();
        assert_eq!(open.0, vec!["seed001", "seed003"]);
        let e = open_routes(&["seed009".into()]).unwrap_err().to_string();
        assert!(e.contains("seed009") && e.contains("seed000"), "{e}");
        assert!(open_routes(&[]).unwrap().0.is_empty());
    }
}
