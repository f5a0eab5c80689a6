//! Secrets and files, as an operator meets them: `--help` never shows a secret's value, a secret
//! can be handed over in a file (`KASSA_…_FILE`), and what `kassa up` writes to its data folder
//! only its owner may read.

use std::{
    io::{BufRead, BufReader},
    os::unix::fs::PermissionsExt,
    process::{Child, Command, Stdio},
};

use kassa_platform::auth::{self, Secret};

use crate::support::{self, unique};

const KASSA: &str = env!("CARGO_BIN_EXE_kassa");

/// Every setting that holds a secret, with a value that says so.
const SECRETS: &[(&str, &str)] = &[
    (
        "KASSA_TOKEN_SECRET",
        "token-hush-of-more-than-thirty-two-bytes",
    ),
    ("KASSA_DATABASE_URL", "postgres://kassa:pg-hush@db/kassa"),
    (
        "KASSA_ORDERS_DATABASE_URL",
        "postgres://kassa:orders-hush@db/orders",
    ),
    ("KASSA_AMQP_URL", "amqp://kassa:mq-hush@mq:5672"),
    ("KASSA_REDIS_URL", "redis://:redis-hush@cache:6379"),
    ("KASSA_STRIPE_SECRET_KEY", "sk_test_stripe-hush"),
    ("KASSA_STRIPE_WEBHOOK_SECRET", "whsec_webhook-hush"),
    ("KASSA_SMTP_URL", "smtp://mailer:smtp-hush@mail:587"),
    (
        "KASSA_CLICKHOUSE_URL",
        "http://reports:ch-hush@ch:8123/kassa",
    ),
];

#[test]
fn help_names_every_secret_setting_and_shows_none_of_their_values() {
    for args in [
        &["--help"][..],
        &["up", "--help"],
        &["serve", "--help"],
        &["migrate", "--help"],
        &["dlq", "list", "--help"],
        &["analytics", "rebuild", "--help"],
    ] {
        let out = Command::new(KASSA)
            .args(args)
            .envs(SECRETS.iter().copied())
            .env("KASSA_NAMESPACE", "a-namespace-shown")
            .output()
            .expect("kassa runs");
        assert!(out.status.success(), "{args:?}");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(!help.contains("hush"), "{args:?} shows a secret:\n{help}");
        if args.len() > 1 {
            // A setting that is no secret still shows its value: the check above can fail.
            assert!(help.contains("a-namespace-shown"), "{args:?}:\n{help}");
        }
        if args[0] == "serve" {
            for (variable, _) in SECRETS {
                assert!(help.contains(variable), "serve --help names no {variable}");
            }
        }
    }
}

/// `kassa up` on free ports with a data folder of its own; killed when dropped.
struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn kassa_up_takes_its_secret_from_a_file_and_keeps_its_data_to_itself() {
    let ns = unique("private");
    let root = std::env::temp_dir().join(format!("kassa-{ns}"));
    let mut leftovers = support::Leftovers::namespace(support::Backend::Embedded, &ns);
    leftovers.folder(root.clone());
    std::fs::create_dir_all(&root).unwrap();
    // As a container platform hands a secret over: a file, with a newline at its end, that
    // others may read (the umask of the platform, not kassa's).
    let secret = "a token secret from a file, thirty-two bytes and more";
    let secret_file = root.join("token-secret.txt");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let data = root.join("data");
    let ports: Vec<String> = kassa::registry::SERVICES
        .iter()
        .flat_map(|s| [format!("--{}-port", s.name), "0".to_owned()])
        .collect();
    let mut child = Command::new(KASSA)
        .arg("up")
        .arg("--data-dir")
        .arg(&data)
        .args(&ports)
        .env("KASSA_NAMESPACE", &ns)
        .env("KASSA_TOKEN_SECRET_FILE", &secret_file)
        .env_remove("KASSA_TOKEN_SECRET")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kassa up starts");
    let stdout = child.stdout.take().unwrap();
    let up = Up(child);
    let mut gateway = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("kassa up prints its addresses");
        let mut words = line.split_whitespace();
        if let (Some("gateway"), Some(url)) = (words.next(), words.next()) {
            gateway = Some(url.to_owned());
            break;
        }
    }
    let gateway = gateway.expect("kassa up printed the gateway's address");

    // Sign-in hands out tokens signed with the secret from the file.
    let (token, _) = support::signed_up(&support::http_client(), &gateway).await;
    let from_file = Secret::new(secret).unwrap();
    assert!(auth::verify(&from_file, &token, chrono::Utc::now()).is_ok());
    assert!(
        !data.join("token-secret").exists(),
        "a secret was given: none is made"
    );

    // The data folder and every file in it (SQLite's databases and their journals): its
    // owner's alone, whatever the umask this test runs with.
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    let mut files = 0;
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        let wanted = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&path), wanted, "{}", path.display());
        files += 1;
    }
    assert!(
        files >= 10,
        "every service's database is there ({files} entries)"
    );
    drop(up);
    drop(leftovers);
}
