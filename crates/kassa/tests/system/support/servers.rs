//! Servers from PyPI the tests run beside kassa, each on a port of its own and stopped when
//! dropped: localstripe (a stateful fake of Stripe's API) and aiosmtpd (an SMTP server keeping
//! what it receives in a Maildir). `scripts/test` installs both; a test never installs anything.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The localstripe release the tests run against.
const LOCALSTRIPE: &str = "localstripe==1.15.10";
/// The aiosmtpd release the tests run against.
const AIOSMTPD: &str = "aiosmtpd==1.4.6";

/// A Python module run as a server on `port`; killed when dropped.
struct PythonServer {
    child: Child,
}

impl PythonServer {
    /// Runs `python3 -m module args…` with its standard error in `log`, and waits until `port`
    /// accepts connections; fails with one line naming `requirement` when it is not installed.
    fn start(requirement: &str, module: &str, args: &[&str], port: u16, log: &Path) -> Self {
        let installed = Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            installed,
            "{requirement} is not installed: run the tests with scripts/test, which installs it"
        );
        let child = Command::new("python3")
            .args(["-m", module])
            .args(args)
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(log)
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            )
            .spawn()
            .unwrap_or_else(|e| panic!("{module} does not start: {e}"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{module} did not listen on {port}; see {}",
                log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        PythonServer { child }
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A localstripe server of its own, started empty.
pub struct LocalStripe {
    _server: PythonServer,
    pub url: String,
}

impl LocalStripe {
    pub fn start() -> LocalStripe {
        let port = free_port();
        // From scratch: it would otherwise load what any other instance last saved.
        let server = PythonServer::start(
            LOCALSTRIPE,
            "localstripe",
            &["--from-scratch", "--port", &port.to_string()],
            port,
            &std::env::temp_dir().join(format!("localstripe-{port}.log")),
        );
        LocalStripe {
            _server: server,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

/// An SMTP server that keeps every message in a Maildir.
pub struct SmtpServer {
    _server: PythonServer,
    maildir: PathBuf,
}

impl SmtpServer {
    pub fn start(port: u16, maildir: &Path) -> SmtpServer {
        let listen = format!("127.0.0.1:{port}");
        let server = PythonServer::start(
            AIOSMTPD,
            "aiosmtpd",
            &["-n", "-l", &listen, "-c", "aiosmtpd.handlers.Mailbox"]
                .into_iter()
                .chain(maildir.to_str())
                .collect::<Vec<_>>(),
            port,
            &std::env::temp_dir().join(format!("aiosmtpd-{port}.log")),
        );
        SmtpServer {
            _server: server,
            maildir: maildir.to_owned(),
        }
    }

    /// Every message received so far, as text.
    pub fn received(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .collect()
    }

    /// The messages to `address`.
    pub fn to(&self, address: &str) -> Vec<String> {
        self.received()
            .into_iter()
            .filter(|m| {
                m.lines()
                    .any(|l| l.starts_with("To:") && l.contains(address))
            })
            .collect()
    }
}
