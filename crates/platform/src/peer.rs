//! Calling another kassa service's API: in this process when it runs here, over HTTP when it
//! runs elsewhere, with what a call across the network needs. Each try has a deadline; a try
//! the other service did not answer (unreachable, timed out, a 502, 503 or 504) is tried again
//! after a growing pause; and a circuit breaker stops calling a service that failed several
//! calls in a row for a while, so that callers learn at once that it is down instead of each
//! waiting out every try. What the caller does with "unavailable" is its own: a payment waits
//! and is tried again later, never failed for it.
//!
//! A service gets a [`Directory`] in its [`Infra`](crate::service::Infra) at build time; the
//! directory learns where each service is once every service of the process is built, and a
//! [`PeerClient`] reads it at each call.

use std::{
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    http::{HeaderValue, Method, Request, StatusCode, header},
};
use bytes::Bytes;
use tower::ServiceExt;

use crate::service::{Peer, Reach};

/// Where each service is reached from this process; filled once every service is built, and
/// emptied when the process stops.
#[derive(Clone, Default)]
pub struct Directory(Arc<RwLock<Option<Arc<Vec<Peer>>>>>);

impl Directory {
    /// Records where every service is (the first call wins).
    pub fn fill(&self, peers: Vec<Peer>) {
        let mut slot = self.0.write().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(Arc::new(peers));
        }
    }

    /// Forgets every peer. A service reached in-process is its router, and the router holds
    /// the service's state: while the directory (held by other services' clients) keeps it,
    /// work that ends when its last handle is dropped (orders' writer) never ends. A stopping
    /// process empties its directory once its servers have stopped.
    pub fn empty(&self) {
        self.0.write().unwrap_or_else(|e| e.into_inner()).take();
    }

    fn reach(&self, service: &str) -> Option<Reach> {
        let peers = self.0.read().unwrap_or_else(|e| e.into_inner()).clone()?;
        peers
            .iter()
            .find(|p| p.service.name == service)
            .map(|p| p.reach.clone())
    }
}

/// How a [`PeerClient`] paces its calls.
#[derive(Debug, Clone)]
pub struct PeerSettings {
    /// The deadline of one try.
    pub timeout: Duration,
    /// Tries per call, the first included.
    pub attempts: u32,
    /// The pause before the second try; each later pause doubles.
    pub backoff: Duration,
    /// Calls failed in a row that open the breaker.
    pub failures_to_open: u32,
    /// How long an open breaker refuses calls before it lets one through to try.
    pub open_for: Duration,
}

impl Default for PeerSettings {
    fn default() -> Self {
        PeerSettings {
            timeout: Duration::from_secs(2),
            attempts: 3,
            backoff: Duration::from_millis(100),
            failures_to_open: 5,
            open_for: Duration::from_secs(5),
        }
    }
}

/// What the other service answered.
#[derive(Debug, Clone)]
pub struct PeerAnswer {
    pub status: StatusCode,
    pub body: Bytes,
}

/// Why a call got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// The service did not answer after every try, or its breaker is open: try again later.
    #[error("the {service} service is unavailable: {reason}")]
    Unavailable {
        service: &'static str,
        reason: String,
    },
}

#[derive(Debug, Default)]
struct Breaker {
    failures_in_a_row: u32,
    open_until: Option<Instant>,
}

/// Calls one other service.
pub struct PeerClient {
    directory: Directory,
    service: &'static str,
    http: reqwest::Client,
    settings: PeerSettings,
    breaker: Mutex<Breaker>,
    /// Signs the service token a call shows when the caller names none.
    service_secret: Option<crate::auth::Secret>,
}

impl PeerClient {
    pub fn new(directory: Directory, service: &'static str, settings: PeerSettings) -> Self {
        crate::http::https_ready();
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .pool_idle_timeout(crate::http::CLIENT_IDLE_TIMEOUT)
            .build()
            .unwrap_or_default();
        PeerClient {
            directory,
            service,
            http,
            settings,
            breaker: Mutex::new(Breaker::default()),
            service_secret: None,
        }
    }

    /// Calls that name no token show a service token signed with `secret` (role `service`):
    /// the other service's routes let kassa's own services in where their rules say so.
    pub fn as_service(mut self, secret: Option<crate::auth::Secret>) -> Self {
        self.service_secret = secret;
        self
    }

    fn unavailable(&self, reason: impl Into<String>) -> PeerError {
        PeerError::Unavailable {
            service: self.service,
            reason: reason.into(),
        }
    }

    /// `GET path` with `bearer` as its token, tried as the settings say.
    pub async fn get(&self, path: &str, bearer: Option<&str>) -> Result<PeerAnswer, PeerError> {
        self.call(Method::GET, path, None, bearer).await
    }

    /// `POST path` with `body` as JSON, tried as the settings say: only for a request the other
    /// service answers the same when it arrives twice (it names what it is for, as a
    /// reservation names its order).
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
        bearer: Option<&str>,
    ) -> Result<PeerAnswer, PeerError> {
        let bytes =
            Bytes::from(serde_json::to_vec(body).map_err(|e| self.unavailable(e.to_string()))?);
        self.call(Method::POST, path, Some(bytes), bearer).await
    }

    /// `DELETE path`, tried as the settings say.
    pub async fn delete(&self, path: &str, bearer: Option<&str>) -> Result<PeerAnswer, PeerError> {
        self.call(Method::DELETE, path, None, bearer).await
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        bearer: Option<&str>,
    ) -> Result<PeerAnswer, PeerError> {
        {
            let breaker = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
            if breaker
                .open_until
                .is_some_and(|until| Instant::now() < until)
            {
                return Err(self.unavailable("it failed the last calls; not called for a while"));
            }
        }
        let minted = match (bearer, &self.service_secret) {
            (None, Some(secret)) => Some(crate::auth::service_token(secret)),
            _ => None,
        };
        let bearer = bearer.or(minted.as_deref());
        let mut last = String::new();
        for attempt in 0..self.settings.attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(self.settings.backoff * 2u32.saturating_pow(attempt - 1)).await;
            }
            match self.try_once(&method, path, body.clone(), bearer).await {
                Ok(answer) => {
                    *self.breaker.lock().unwrap_or_else(|e| e.into_inner()) = Breaker::default();
                    return Ok(answer);
                }
                Err(reason) => last = reason,
            }
        }
        let mut breaker = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
        breaker.failures_in_a_row += 1;
        if breaker.failures_in_a_row >= self.settings.failures_to_open {
            breaker.open_until = Some(Instant::now() + self.settings.open_for);
            tracing::warn!(
                service = self.service,
                "circuit opened: the service failed {} calls in a row",
                breaker.failures_in_a_row
            );
        }
        Err(self.unavailable(last))
    }

    /// One try: an answer, or why there was none.
    async fn try_once(
        &self,
        method: &Method,
        path: &str,
        body: Option<Bytes>,
        bearer: Option<&str>,
    ) -> Result<PeerAnswer, String> {
        let answer = match self.directory.reach(self.service) {
            None => return Err("this process does not know where it runs yet".into()),
            Some(Reach::InProcess(router)) => {
                let mut req = Request::builder().method(method.clone()).uri(path);
                if let Some(token) = bearer {
                    let value = HeaderValue::from_str(&format!("Bearer {token}"))
                        .map_err(|e| e.to_string())?;
                    req = req.header(header::AUTHORIZATION, value);
                }
                let req = match body {
                    Some(bytes) => req
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(Body::from(bytes)),
                    None => req.body(Body::empty()),
                }
                .map_err(|e| e.to_string())?;
                let call = async {
                    let response = match router.oneshot(req).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    };
                    let status = response.status();
                    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok::<_, String>(PeerAnswer { status, body })
                };
                tokio::time::timeout(self.settings.timeout, call)
                    .await
                    .map_err(|_| "no answer in time".to_owned())??
            }
            Some(Reach::Url(base)) => {
                let mut req = self.http.request(
                    method.clone(),
                    format!("{}{path}", base.trim_end_matches('/')),
                );
                if let Some(token) = bearer {
                    req = req.bearer_auth(token);
                }
                if let Some(bytes) = body {
                    req = req
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(bytes);
                }
                let response = req.send().await.map_err(|e| e.to_string())?;
                let status = response.status();
                let body = response.bytes().await.map_err(|e| e.to_string())?;
                PeerAnswer { status, body }
            }
        };
        if matches!(
            answer.status,
            StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
        ) {
            return Err(format!("it answered {}", answer.status));
        }
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use axum::{Router, routing::get};

    use super::*;
    use crate::service::Service;

    static USERS: Service = Service {
        name: "users",
        default_port: 0,
        migrations: None,
        routes: &[],
        access: &[],
        consumes: &[],
        settings: &[],
        tasks: &[],
        openapi: utoipa::openapi::OpenApi::default,
        build: |_| Err(crate::service::BuildError::Start("not built here".into())),
    };

    fn settings() -> PeerSettings {
        PeerSettings {
            timeout: Duration::from_millis(200),
            attempts: 3,
            backoff: Duration::from_millis(5),
            failures_to_open: 2,
            open_for: Duration::from_millis(300),
        }
    }

    /// A service that answers 503 `failing` times, then 200 with the token it was shown.
    fn flaky(failing: u32) -> (Directory, Arc<AtomicU32>) {
        let calls = Arc::new(AtomicU32::new(0));
        let seen = calls.clone();
        let router = Router::new().route(
            "/who",
            get(move |headers: axum::http::HeaderMap| {
                let n = seen.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < failing {
                        (StatusCode::SERVICE_UNAVAILABLE, String::new())
                    } else {
                        let token = headers
                            .get(header::AUTHORIZATION)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        (StatusCode::OK, token)
                    }
                }
            }),
        );
        let directory = Directory::default();
        directory.fill(vec![Peer {
            service: &USERS,
            reach: Reach::InProcess(router),
        }]);
        (directory, calls)
    }

    #[tokio::test]
    async fn a_failed_try_is_tried_again() {
        let (directory, calls) = flaky(2);
        let client = PeerClient::new(directory, "users", settings());
        let answer = client.get("/who", Some("t0ken")).await.unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(&answer.body[..], b"Bearer t0ken");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn the_breaker_opens_after_failed_calls_and_lets_one_through_later() {
        let (directory, calls) = flaky(6);
        let client = PeerClient::new(directory, "users", settings());
        // Two calls of three tries each fail: the breaker opens.
        for _ in 0..2 {
            assert!(client.get("/who", None).await.is_err());
        }
        assert_eq!(calls.load(Ordering::SeqCst), 6);
        // While it is open, nothing is called.
        let refused = client.get("/who", None).await.unwrap_err();
        assert!(
            refused.to_string().contains("not called for a while"),
            "{refused}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 6);
        // Once it has been open long enough, a call goes through, and succeeds now.
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(
            client.get("/who", None).await.unwrap().status,
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn an_unknown_or_unreachable_service_is_unavailable() {
        let client = PeerClient::new(Directory::default(), "users", settings());
        assert!(client.get("/who", None).await.is_err());
        let directory = Directory::default();
        directory.fill(vec![Peer {
            service: &USERS,
            // Nothing listens on port 9 of this machine.
            reach: Reach::Url("http://127.0.0.1:9".into()),
        }]);
        let client = PeerClient::new(directory, "users", settings());
        let e = client.get("/who", None).await.unwrap_err();
        assert!(matches!(
            e,
            PeerError::Unavailable {
                service: "users",
                ..
            }
        ));
    }
}
