//! HTTP plumbing every service gets: request and correlation ids, structured request logs,
//! timeouts, body limits, problem+json errors (panics included), health, Prometheus metrics,
//! OpenAPI and Swagger UI.

pub mod extract;
pub mod openapi;
pub mod problem;
mod raw_errors;

use std::{
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use axum::{
    Extension, Json,
    extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Request, State},
    http::{HeaderName, HeaderValue, StatusCode, header, request::Parts},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use kassa_contracts::EventContext;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use tracing::Instrument;
use uuid::Uuid;

/// The router services answer with (re-exported so a service crate need not name axum).
pub use axum::Router;
pub use extract::{
    ApiJson, MAX_LIMIT, Page, PageMeta, Pagination, PathId, found, not_null, parse_json, parse_uuid,
};
pub use problem::{ApiError, ApiResult};
pub use raw_errors::ClientAddr;

use crate::{bus::EventBus, cache::Cache, db::Db, shutdown::Shutdown};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");

/// How long kassa's own HTTP clients (the gateway's, services calling services) keep an idle
/// pooled connection: less than a kassa listener's default header-read timeout (10 s), so that
/// a client lets a connection go before the server closes it under a request being sent.
pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// Limits every service's HTTP server applies.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub request_timeout: Duration,
    pub body_limit: usize,
    /// The secret that signs and checks access tokens ([`crate::auth`]); none: no token is
    /// accepted.
    pub tokens: Option<crate::auth::Secret>,
    /// The route groups opened to anonymous callers (`KASSA_OPEN_ROUTES`, [`crate::access`]).
    pub open_routes: crate::access::OpenGroups,
    /// Where API keys and people's roles are checked; none: no key is accepted, and a token's
    /// role is taken as it says (a process with no users service to ask, and tests).
    pub principals: Option<crate::principals::Principals>,
    /// How long a connection may take to send a request's head (and an idle keep-alive
    /// connection its next one) before it is closed.
    pub header_read_timeout: Duration,
    /// Connections a listener holds at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Requests a listener works on at once; more are answered 503 with `Retry-After`.
    pub max_in_flight: usize,
    /// The web origins (`https://shop.example`) whose pages may call the API from a browser,
    /// cookies included ([`Cors`]); none: only pages of the API's own origin.
    pub cors_origins: Vec<String>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            request_timeout: Duration::from_secs(30),
            body_limit: 64 * 1024,
            tokens: None,
            open_routes: Default::default(),
            principals: None,
            header_read_timeout: Duration::from_secs(10),
            max_connections: 4096,
            max_in_flight: 1024,
            cors_origins: Vec::new(),
        }
    }
}

/// The ids a request carries through the system: its own, and the correlation id of the flow it
/// belongs to (taken from `X-Correlation-Id`, else the request id).
#[derive(Debug, Clone)]
pub struct RequestIds {
    pub request_id: String,
    pub correlation_id: String,
}

impl RequestIds {
    /// The context of the events this request causes.
    pub fn event_context(&self) -> EventContext {
        EventContext::new(self.correlation_id.clone())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestIds {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<RequestIds>()
            .cloned()
            .unwrap_or_else(|| {
                let id = Uuid::now_v7().to_string();
                RequestIds {
                    request_id: id.clone(),
                    correlation_id: id,
                }
            }))
    }
}

/// The id a client sent in `name`, if it is 1 to 128 characters of `[A-Za-z0-9._:-]`.
///
/// Ids are logged, echoed in headers and stored with events, so a value with spaces, quotes,
/// brackets or anything non-ASCII could forge log fields or carry markup into whatever displays
/// it; such a value is dropped (the caller mints a fresh id) rather than cleaned up.
fn header_id(req: &Request, name: &HeaderName) -> Option<String> {
    let value = req.headers().get(name)?.to_str().ok()?;
    let safe = (1..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    safe.then(|| value.to_owned())
}

/// Whether `path` is `prefix` or below it (`/api/orders/1` is under `/api/orders`,
/// `/api/ordersx` is not).
pub fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Why `path` is refused before it is routed: a dot segment (`.` or `..`, raw or percent-encoded)
/// or an encoded slash or backslash (`%2F`, `%5C`, also encoded twice), or a raw backslash. No
/// kassa route has one, and a proxy or HTTP client that resolves them would reach another route
/// than the one the gateway checked and counted (`/api/users/%2e%2e/auth/signin` is sign-in).
pub fn refused_path(path: &str) -> Option<&'static str> {
    // Nearly every path has none of the bytes a dot segment or an encoded slash needs: it is
    // taken without a copy.
    if !path.bytes().any(|b| matches!(b, b'.' | b'%' | b'\\')) {
        return None;
    }
    let lower = path.to_ascii_lowercase();
    let mut decoded = lower.replace("%25", "%");
    for _ in 0..2 {
        decoded = decoded.replace("%2e", ".");
    }
    if decoded
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return Some("a dot segment (`.` or `..`, raw or percent-encoded)");
    }
    if decoded.contains("%2f") || decoded.contains("%5c") || path.contains('\\') {
        return Some("an encoded slash or a backslash");
    }
    None
}

/// Answers a panic in a handler (or a layer under this one) as an internal error. Without it the
/// panic unwinds through the connection task and hyper drops the connection: no status, no
/// problem, no request id for the client to quote.
fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(a panic payload that is not a string)");
    // Runs inside the request's span, so the line carries the request and correlation ids.
    tracing::error!(panic = message, "handler panicked");
    ApiError::internal().into_response()
}

/// Answers an error that is not a problem yet as one, with the same status and its text as the
/// detail. axum's own extractors answer in plain text: `Path` when a segment is not UTF-8 once
/// percent-decoded (`/api/orders/%FF`), `Query` and `Json` when theirs do not deserialize.
async fn errors_as_problems(response: Response) -> Response {
    let status = response.status();
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !plain {
        return response;
    }
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let text = axum::body::to_bytes(response.into_body(), 16 * 1024)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let code = match status.as_u16() {
        400 => "invalid_request",
        404 => "not_found",
        405 => "method_not_allowed",
        413 => "body_too_large",
        415 => "unsupported_media_type",
        422 => "unprocessable_request",
        500..=599 => "internal_error",
        _ => "request_refused",
    };
    let detail = match text.as_str() {
        "" => status.canonical_reason().unwrap_or("Error").to_owned(),
        t if t.ends_with('.') => t.to_owned(),
        t => format!("{t}."),
    };
    let mut problem = ApiError::new(status, code, detail);
    problem.retry_after = retry_after;
    problem.into_response()
}

/// Gives the request its ids, logs it, times it, and echoes the ids in the response.
/// The label of a method on the request metrics, without allocating.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The label of a status code on the request metrics, made once per code.
fn status_label(status: StatusCode) -> &'static str {
    static LABELS: OnceLock<Vec<String>> = OnceLock::new();
    let labels = LABELS.get_or_init(|| (0..1000).map(|code| code.to_string()).collect());
    labels
        .get(status.as_u16() as usize)
        .map_or("other", String::as_str)
}

/// What [`request_context`] holds to: a request's time limit and the requests a listener works
/// on at once.
#[derive(Clone)]
struct Limits {
    request_timeout: Duration,
    in_flight: Arc<tokio::sync::Semaphore>,
}

/// The web origins allowed to call from a browser (a request extension, read by
/// [`crate::auth`] too: a page of an allowed origin may act with the cookie).
#[derive(Debug, Clone, Default)]
pub struct Cors(pub Arc<Vec<String>>);

impl Cors {
    /// Origins as configured: scheme, host and port, compared without letter case or a
    /// trailing slash.
    pub fn new(origins: &[String]) -> Self {
        Cors(Arc::new(
            origins
                .iter()
                .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                .filter(|o| !o.is_empty())
                .collect(),
        ))
    }

    /// Whether `origin` (an `Origin` header's value) is allowed.
    pub fn allows(&self, origin: &str) -> bool {
        let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        self.0.contains(&origin)
    }

    /// A request's `Origin` header, if it names an allowed origin.
    fn allowed<'a>(&self, origin: Option<&'a HeaderValue>) -> Option<&'a HeaderValue> {
        origin.filter(|o| o.to_str().is_ok_and(|o| self.allows(o)))
    }
}

/// Lets `origin`'s page read the answer, cookies included.
fn credentialed(headers: &mut axum::http::HeaderMap, origin: &HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
}

/// The answer to a CORS preflight (`OPTIONS` with `Access-Control-Request-Method`): 204 with
/// what an allowed origin may send, or 403 for another origin.
fn preflight(cors: &Cors, origin: Option<&HeaderValue>) -> Response {
    let Some(origin) = cors.allowed(origin) else {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "Pages of this origin may not call this API from a browser (KASSA_CORS_ORIGINS).",
        )
        .into_response();
    };
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    credentialed(headers, origin);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(
            "authorization, content-type, idempotency-key, if-match, x-request-id, \
             x-correlation-id, x-api-key",
        ),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    response
}

/// An allowed origin's page may read the answer (and the ids and `Retry-After` on it).
fn allow_origin(cors: &Cors, origin: Option<&HeaderValue>, headers: &mut axum::http::HeaderMap) {
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    let Some(origin) = cors.allowed(origin) else {
        return;
    };
    credentialed(headers, origin);
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("x-request-id, x-correlation-id, retry-after, location, etag"),
    );
}

/// Headers on every answer: its body is what its content type says (`nosniff`), no page of
/// another site frames it, and no address is passed on as a referrer.
fn secure_headers(headers: &mut axum::http::HeaderMap) {
    headers
        .entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    headers
        .entry(header::X_FRAME_OPTIONS)
        .or_insert(HeaderValue::from_static("DENY"));
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static("frame-ancestors 'none'"));
    headers
        .entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("no-referrer"));
}

/// Everything every request goes through, in one layer: its ids, its time limit (past it a 503
/// problem), the listener's cap on requests in flight (past it a 503 problem), errors turned
/// into problems, security headers, a log line, and its metrics.
async fn request_context(
    State(limits): State<Limits>,
    Extension(service): Extension<ServiceName>,
    mut req: Request,
    next: Next,
) -> Response {
    let limit = limits.request_timeout;
    let request_id = header_id(&req, &REQUEST_ID).unwrap_or_else(|| Uuid::now_v7().to_string());
    let correlation_id = header_id(&req, &CORRELATION_ID).unwrap_or_else(|| request_id.clone());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().clone();
    let refused = refused_path(req.uri().path());
    let cors = req.extensions().get::<Cors>().cloned().unwrap_or_default();
    let origin = req.headers().get(header::ORIGIN).cloned();
    let is_preflight = method == axum::http::Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    req.extensions_mut().insert(RequestIds {
        request_id: request_id.clone(),
        correlation_id: correlation_id.clone(),
    });
    let span = tracing::info_span!("request", service = service.0, %method, path = %req.uri().path(), %request_id, %correlation_id);
    let started = Instant::now();
    let preflight_answer = is_preflight.then(|| preflight(&cors, origin.as_ref()));
    let handled = async move {
        // Held until the answer is made; none left: the listener is at its cap.
        let Ok(_working) = limits.in_flight.try_acquire_owned() else {
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "This service is working on as many requests as it takes at once; try again \
                 shortly.",
            )
            .with_retry_after(1)
            .into_response();
        };
        if let Some(why) = refused {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_path",
                format!("The path has {why}; name the route itself."),
            )
            .into_response();
        }
        if let Some(answer) = preflight_answer {
            return answer;
        }
        match tokio::time::timeout(limit, next.run(req)).await {
            Ok(response) => errors_as_problems(response).await,
            Err(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "request_timeout",
                "The request took longer than this service allows and was abandoned; it may or \
                 may not have taken effect.",
            )
            .with_retry_after(1)
            .into_response(),
        }
    };
    let mut response = problem::REQUEST_ID
        .scope(request_id.clone(), handled)
        .instrument(span.clone())
        .await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(
                status,
                latency_ms = elapsed.as_secs_f64() * 1e3,
                "request failed"
            );
        } else {
            tracing::info!(status, latency_ms = elapsed.as_secs_f64() * 1e3, "request");
        }
    });
    let labels = [
        ("service", metrics::SharedString::from(service.0)),
        ("method", method_label(&method).into()),
        ("route", route.into()),
        ("status", status_label(response.status()).into()),
    ];
    metrics::counter!("kassa_http_requests_total", &labels).increment(1);
    metrics::histogram!("kassa_http_request_duration_seconds", &labels[..3])
        .record(elapsed.as_secs_f64());
    secure_headers(response.headers_mut());
    if !is_preflight {
        allow_origin(&cors, origin.as_ref(), response.headers_mut());
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    if let Ok(v) = HeaderValue::from_str(&correlation_id) {
        response.headers_mut().insert(CORRELATION_ID, v);
    }
    response
}

#[derive(Clone, Copy)]
struct ServiceName(&'static str);

/// What `/health/ready` checks.
#[derive(Clone)]
pub struct Readiness {
    pub db: Option<Db>,
    pub bus: Option<Arc<dyn EventBus>>,
    pub cache: Option<Arc<dyn Cache>>,
    pub shutdown: Shutdown,
}

async fn live() -> Json<serde_json::Value> {
    Json(json!({ "status": "live" }))
}

async fn ready(State(r): State<Readiness>) -> Response {
    let mut ok = !r.shutdown.is_triggered();
    let mut checks = serde_json::Map::new();
    if let Some(db) = &r.db {
        let result = tokio::time::timeout(Duration::from_secs(2), db.ping()).await;
        let up = matches!(result, Ok(Ok(())));
        ok &= up;
        checks.insert("database".into(), json!(if up { "up" } else { "down" }));
    }
    if let Some(bus) = &r.bus {
        let result = tokio::time::timeout(Duration::from_secs(2), bus.ready()).await;
        let up = matches!(result, Ok(Ok(())));
        ok &= up;
        checks.insert("broker".into(), json!(if up { "up" } else { "down" }));
    }
    if let Some(cache) = &r.cache {
        // Informational: without the cache the service reads its database.
        let up = cache.ping().await.is_ok();
        checks.insert(
            "cache".into(),
            json!(if up {
                "up"
            } else {
                "down (reads go to the database)"
            }),
        );
    }
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "status": if ok { "ready" } else { "not ready" }, "checks": checks })),
    )
        .into_response()
}

/// The process-wide Prometheus recorder.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; the handle still renders ours.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Every few seconds until `shutdown`: folds the samples histograms collected into their
/// summaries (without it they pile up between scrapes, and without a scraper, forever), and
/// gives memory freed since back to the system (see [`crate::memory`]).
pub async fn metrics_upkeep(shutdown: crate::shutdown::Shutdown) {
    let handle = prometheus();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {
                handle.run_upkeep();
                tokio::task::spawn_blocking(crate::memory::give_back);
            }
            _ = shutdown.wait() => return,
        }
    }
}

async fn render_metrics() -> Response {
    if let Some(bytes) = resident_memory_bytes() {
        metrics::gauge!("process_resident_memory_bytes").set(bytes as f64);
    }
    let body = prometheus().render();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        body,
    )
        .into_response()
}

/// This process's resident set size, where the system tells it (Linux's `/proc`).
pub fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

async fn no_route() -> ApiError {
    ApiError::not_found(
        "route_not_found",
        "No such endpoint; see /swagger for the ones this service has.",
    )
}

async fn wrong_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "This endpoint does not accept that HTTP method.",
    )
}

/// A service's OpenAPI document, made on the first request for it and kept.
struct LazyDocument {
    make: crate::service::Document,
    json: tokio::sync::OnceCell<axum::body::Bytes>,
}

async fn document_json(State(document): State<Arc<LazyDocument>>) -> ApiResult<Response> {
    let make = document.make.clone();
    // Made once, off the async workers (the gateway's merges every service's document);
    // requests that arrive meanwhile wait for it.
    let json = document
        .json
        .get_or_try_init(|| async move {
            tokio::task::spawn_blocking(move || {
                let mut doc = make();
                openapi::prune_links(&mut doc);
                // A document is plain data: serialising it cannot fail.
                axum::body::Bytes::from(serde_json::to_vec(&doc).unwrap_or_default())
            })
            .await
        })
        .await
        .map_err(|_| ApiError::internal())?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json.clone()).into_response())
}

/// Wraps a service's API routes with everything a kassa service serves.
pub fn service_app(
    name: &'static str,
    rules: crate::access::Rules,
    api: Router,
    openapi: crate::service::Document,
    readiness: Readiness,
    settings: &HttpSettings,
) -> Router {
    prometheus();
    let swagger: Router = utoipa_swagger_ui::SwaggerUi::new("/swagger")
        .config(utoipa_swagger_ui::Config::new(["/openapi.json"]))
        .into();
    let document = Arc::new(LazyDocument {
        make: Arc::new(move || {
            let mut doc = openapi();
            crate::access::document(&mut doc, rules);
            doc
        }),
        json: tokio::sync::OnceCell::new(),
    });
    let app = Router::new()
        .merge(api)
        .merge(swagger)
        .route("/openapi.json", get(document_json).with_state(document))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready).with_state(readiness))
        .route("/metrics", get(render_metrics))
        // Each route's rule, checked before its handler runs (a route without one answers no
        // one); not the fallback's: a path no route matches is a 404 to anyone.
        .route_layer(middleware::from_fn_with_state(
            Arc::new(crate::access::Table::new(
                rules,
                settings.open_routes.clone(),
            )),
            crate::access::enforce,
        ))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(settings.body_limit))
        // Inside `request_context`, so a panic's problem carries the request id and is logged and
        // counted like any other 500.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .layer(middleware::from_fn_with_state(
            Limits {
                request_timeout: settings.request_timeout,
                in_flight: Arc::new(tokio::sync::Semaphore::new(settings.max_in_flight.max(1))),
            },
            request_context,
        ))
        .layer(Extension(ServiceName(name)))
        .layer(Extension(crate::auth::Tokens(settings.tokens.clone())))
        .layer(Extension(Cors::new(&settings.cors_origins)));
    match &settings.principals {
        Some(principals) => app.layer(Extension(principals.clone())),
        None => app,
    }
}

/// Makes HTTPS available to the HTTP clients of this process (Stripe, services over `https://`
/// URLs): rustls with ring's cryptography, installed once. Call it before building a client.
pub fn https_ready() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Another part of the process may have installed a provider first: that one serves.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Serves `app` on `listener` until `shutdown`; requests in flight then are finished.
///
/// A request whose head hyper cannot parse never reaches `app`; hyper's own answer to it (400,
/// 414 or 431) is written as a problem by the connection wrapper in `raw_errors.rs`, which also
/// closes a connection whose request head is late and holds the listener to
/// `settings.max_connections`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: Shutdown,
    settings: &HttpSettings,
) -> std::io::Result<()> {
    axum::serve(
        raw_errors::ProblemListener {
            listener,
            header_read_timeout: settings.header_read_timeout,
            connections: Arc::new(tokio::sync::Semaphore::new(settings.max_connections.max(1))),
        },
        app.into_make_service_with_connect_info::<ClientAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.wait().await })
    .await
}

/// Parses a JSON number field holding money, exactly (see [`kassa_contracts::Money::parse`]).
pub fn parse_amount(
    param: &str,
    raw: &serde_json::value::RawValue,
    currency: kassa_contracts::Currency,
) -> Result<kassa_contracts::Money, ApiError> {
    let text = raw.get().trim();
    if !text.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
        return Err(ApiError::invalid(
            param,
            "invalid_amount",
            format!("`{param}` must be a JSON number such as 150.50."),
        ));
    }
    kassa_contracts::Money::parse(text, currency)
        .map_err(|e| ApiError::invalid(param, "invalid_amount", format!("`{param}` {e}.")))
}

/// Parses an ISO 4217 currency code field: three letters, in any case, nothing around them.
pub fn parse_currency(param: &str, code: &str) -> Result<kassa_contracts::Currency, ApiError> {
    let letters = code.len() == 3 && code.bytes().all(|b| b.is_ascii_alphabetic());
    let currency = kassa_contracts::Currency::parse(code)
        .ok()
        .filter(|_| letters);
    currency.ok_or_else(|| {
        ApiError::invalid(
            param,
            "invalid_currency",
            format!("`{param}` must be an ISO 4217 currency code kassa supports, such as USD."),
        )
    })
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, http::header};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tower::ServiceExt;

    use super::*;

    fn app(api: Router) -> Router {
        app_with(api, &HttpSettings::default())
    }

    /// The test routes are anyone's.
    const ANYONE: crate::access::Rules = &[&[crate::access::Rule::new(
        crate::access::Verb::Get,
        crate::access::FORWARDED,
        crate::access::Policy::PUBLIC,
    )]];

    fn app_with(api: Router, settings: &HttpSettings) -> Router {
        let (_trigger, shutdown) = crate::shutdown::channel();
        let readiness = Readiness {
            db: None,
            bus: None,
            cache: None,
            shutdown,
        };
        service_app(
            "test",
            ANYONE,
            api,
            Arc::new(|| utoipa::openapi::OpenApiBuilder::new().build()),
            readiness,
            settings,
        )
    }

    async fn echo_ids(ids: RequestIds) -> Json<serde_json::Value> {
        Json(json!({ "requestId": ids.request_id, "correlationId": ids.correlation_id }))
    }

    async fn body_json(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    fn with_header(name: &HeaderName, value: &[u8]) -> Request {
        Request::builder()
            .uri("/")
            .header(name, HeaderValue::from_bytes(value).unwrap())
            .body(Body::empty())
            .unwrap()
    }

    #[test]
    fn ids_from_headers_use_a_safe_charset() {
        let longest = "a".repeat(128);
        for good in [
            "abc",
            "A.b_c:D-9",
            "0190c5a4-7d1e-7cc3-8a57-3f4c8e5b2a10",
            longest.as_str(),
        ] {
            let req = with_header(&REQUEST_ID, good.as_bytes());
            assert_eq!(header_id(&req, &REQUEST_ID).as_deref(), Some(good));
        }
        let too_long = "a".repeat(129);
        for bad in [
            &b""[..],
            too_long.as_bytes(),
            b"a b",
            b"<script>",
            b"a/b",
            b"a\"b",
            b"a,b",
            b"a;b",
            b"a=b",
            b"%0d%0a",
            b"a\tb",
            "caf\u{e9}".as_bytes(),
        ] {
            let req = with_header(&REQUEST_ID, bad);
            assert_eq!(
                header_id(&req, &REQUEST_ID),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn dot_segments_and_encoded_slashes_are_refused() {
        for refused in [
            "/api/users/../auth/signin",
            "/api/users/./me",
            "/api/users/%2e%2e/auth/signin",
            "/api/users/%2E%2e/auth/signin",
            "/api/users/.%2e/auth/signin",
            "/api/users/%252e%252e/auth/signin",
            "/api/users/%2e",
            "/..",
            "/api/users%2fme",
            "/api/users%2Fme",
            "/api/users%5cme",
            "/api/users%252fme",
            "/api/users\\me",
        ] {
            assert!(refused_path(refused).is_some(), "{refused}");
        }
        for allowed in [
            "/",
            "/api/users/me",
            "/.well-known/openapi",
            "/api/products/a.b",
            "/api/products/...",
            "/api/orders/0190c5a4-7d1e-7cc3-8a57-3f4c8e5b2a10",
            "/api/products/caf%C3%A9",
        ] {
            assert_eq!(refused_path(allowed), None, "{allowed}");
        }
    }

    #[tokio::test]
    async fn a_dot_segment_never_reaches_a_route() {
        async fn reached() -> &'static str {
            "reached"
        }
        let app = app(Router::new().route("/auth/{*rest}", get(reached)));
        for path in ["/auth/%2e%2e/secret", "/auth/a%2fb"] {
            let req = Request::builder().uri(path).body(Body::empty()).unwrap();
            let response = app.clone().oneshot(req).await.unwrap();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
            let body = body_json(response).await;
            assert_eq!(body["code"], "invalid_path", "{path}");
        }
        let req = Request::builder()
            .uri("/auth/x")
            .body(Body::empty())
            .unwrap();
        assert_eq!(app.oneshot(req).await.unwrap().status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn bad_ids_are_replaced_never_echoed() {
        let app = app(Router::new().route("/ids", get(echo_ids)));
        let req = Request::builder()
            .uri("/ids")
            .header(REQUEST_ID, "<script>")
            .header(CORRELATION_ID, "a b")
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(req).await.unwrap();
        let header = |name: &HeaderName| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .unwrap_or_default()
        };
        let (request_id, correlation_id) = (header(&REQUEST_ID), header(&CORRELATION_ID));
        let minted = Uuid::parse_str(&request_id).unwrap();
        assert_eq!(minted.get_version_num(), 7);
        assert_eq!(correlation_id, request_id);
        let body = body_json(response).await;
        assert_eq!(body["requestId"], request_id.as_str());
        assert_eq!(body["correlationId"], request_id.as_str());

        let req = Request::builder()
            .uri("/ids")
            .header(REQUEST_ID, "req-1")
            .header(CORRELATION_ID, "flow:42")
            .body(Body::empty())
            .unwrap();
        let body = body_json(app.oneshot(req).await.unwrap()).await;
        assert_eq!(
            body,
            json!({ "requestId": "req-1", "correlationId": "flow:42" })
        );
    }

    #[tokio::test]
    async fn a_panicking_handler_gets_a_problem() {
        async fn boom() -> &'static str {
            panic!("handler bug")
        }
        let app = app(Router::new().route("/boom", get(boom)));
        let req = Request::builder()
            .uri("/boom")
            .header(REQUEST_ID, "panic-1")
            .body(Body::empty())
            .unwrap();
        let response = app.oneshot(req).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).unwrap(),
            "application/problem+json"
        );
        assert_eq!(response.headers().get(REQUEST_ID).unwrap(), "panic-1");
        let body = body_json(response).await;
        assert_eq!(body["code"], "internal_error");
        assert_eq!(body["status"], 500);
        assert_eq!(body["requestId"], "panic-1");
        // The panic message is for the log, not for the client.
        assert!(!body.to_string().contains("handler bug"));
    }

    #[tokio::test]
    async fn a_slow_request_gets_a_timeout_problem() {
        async fn slow() -> &'static str {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "late"
        }
        let settings = HttpSettings {
            request_timeout: Duration::from_millis(50),
            ..HttpSettings::default()
        };
        let app = app_with(Router::new().route("/slow", get(slow)), &settings);
        let req = Request::builder()
            .uri("/slow")
            .header(REQUEST_ID, "slow-1")
            .body(Body::empty())
            .unwrap();
        let response = app.oneshot(req).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).unwrap(),
            "application/problem+json"
        );
        let body = body_json(response).await;
        assert_eq!(body["code"], "request_timeout");
        assert_eq!(body["requestId"], "slow-1");
    }

    #[tokio::test]
    async fn extractor_rejections_are_problems() {
        async fn segment(axum::extract::Path(id): axum::extract::Path<String>) -> String {
            id
        }
        let app = app(Router::new().route("/things/{id}", get(segment)));
        let req = Request::builder()
            .uri("/things/%FF")
            .header(REQUEST_ID, "utf8-1")
            .body(Body::empty())
            .unwrap();
        let response = app.oneshot(req).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).unwrap(),
            "application/problem+json"
        );
        let body = body_json(response).await;
        assert_eq!(body["code"], "invalid_request");
        assert_eq!(body["requestId"], "utf8-1");
        assert!(body["detail"].as_str().unwrap().contains("UTF-8"), "{body}");
    }

    #[tokio::test]
    async fn a_path_id_is_a_canonical_uuid_named_as_the_route_names_it() {
        async fn one(PathId(id): PathId) -> String {
            id.to_string()
        }
        let app = app(Router::new()
            .route("/things/{thingId}", get(one))
            .route("/pairs/{a}/{b}", get(one)));
        let get_path = |path: &str| Request::builder().uri(path).body(Body::empty()).unwrap();
        let id = "476f5730-aa83-4ff0-ab9f-d6e19836e195";
        let response = app
            .clone()
            .oneshot(get_path(&format!("/things/{id}")))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let text = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(text, id.as_bytes());

        for bad in ["nope", "00000000-0000-0000-0000-000000000000", "%FF"] {
            let response = app
                .clone()
                .oneshot(get_path(&format!("/things/{bad}")))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
            let body = body_json(response).await;
            assert!(
                ["invalid_uuid", "invalid_request"].contains(&body["code"].as_str().unwrap()),
                "{bad}: {body}"
            );
            if bad != "%FF" {
                assert_eq!(body["param"], "thingId", "{bad}: {body}");
            }
        }
        // Two parameters: the handler's mistake, a 500, never a guess at which one is meant.
        let response = app
            .oneshot(get_path(&format!("/pairs/{id}/{id}")))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    /// Sends `raw` to a real server running `app` and returns everything it answers.
    async fn exchange(app: Router, raw: &[u8]) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, shutdown) = crate::shutdown::channel();
        let settings = HttpSettings::default();
        let server = tokio::spawn(async move { serve(listener, app, shutdown, &settings).await });
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(raw).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
            .await
            .unwrap()
            .unwrap();
        trigger.trigger();
        server.await.unwrap().unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    }

    /// A real server running `app` with `settings`: its address, and what stops it.
    async fn server(
        app: Router,
        settings: HttpSettings,
    ) -> (std::net::SocketAddr, crate::shutdown::ShutdownTrigger) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, shutdown) = crate::shutdown::channel();
        tokio::spawn(async move { serve(listener, app, shutdown, &settings).await });
        (addr, trigger)
    }

    /// Reads until the server closes the connection (or 5 s pass: a failure); what it sent.
    async fn until_closed(stream: &mut tokio::net::TcpStream) -> String {
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
            .await
            .expect("the server closed the connection")
            .ok();
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test]
    async fn a_head_that_does_not_arrive_in_time_closes_its_connection() {
        let settings = HttpSettings {
            header_read_timeout: Duration::from_millis(300),
            ..HttpSettings::default()
        };
        let (addr, _stop) = server(app(Router::new().route("/", get(live))), settings).await;
        // Never finishes its head.
        let started = Instant::now();
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: kassa\r\n")
            .await
            .unwrap();
        assert_eq!(until_closed(&mut slow).await, "");
        assert!(started.elapsed() >= Duration::from_millis(300));
        // Sends its head a byte at a time, each in time, the whole too late.
        let mut trickle = tokio::net::TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        let mut closed = false;
        for byte in b"GET / HTTP/1.1\r\nHost: kassa\r\nX-Slow: yes\r\n\r\n" {
            if trickle.write_all(&[*byte]).await.is_err() {
                closed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let answer = until_closed(&mut trickle).await;
        assert!(closed || !answer.contains("200 OK"), "{answer}");
        assert!(started.elapsed() < Duration::from_secs(2));
        // A head in time is answered, and the connection, idle afterwards, is closed.
        let mut prompt = tokio::net::TcpStream::connect(addr).await.unwrap();
        prompt
            .write_all(b"GET / HTTP/1.1\r\nHost: kassa\r\n\r\n")
            .await
            .unwrap();
        let answer = until_closed(&mut prompt).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    }

    #[tokio::test]
    async fn connections_past_the_cap_wait_for_one_to_close() {
        let settings = HttpSettings {
            max_connections: 2,
            ..HttpSettings::default()
        };
        let (addr, _stop) = server(app(Router::new().route("/", get(live))), settings).await;
        let first = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _second = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
        third
            .write_all(b"GET / HTTP/1.1\r\nHost: kassa\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut byte = [0u8; 1];
        let waited = tokio::time::timeout(Duration::from_millis(300), third.read(&mut byte)).await;
        assert!(
            waited.is_err(),
            "the third connection was served past the cap"
        );
        drop(first);
        let answer = until_closed(&mut third).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    }

    #[tokio::test]
    async fn requests_past_the_cap_in_flight_are_answered_busy() {
        async fn slow() -> &'static str {
            tokio::time::sleep(Duration::from_millis(300)).await;
            "done"
        }
        let settings = HttpSettings {
            max_in_flight: 1,
            ..HttpSettings::default()
        };
        let app = app_with(Router::new().route("/slow", get(slow)), &settings);
        let get_slow = || Request::builder().uri("/slow").body(Body::empty()).unwrap();
        let (a, b) = tokio::join!(app.clone().oneshot(get_slow()), async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            app.clone().oneshot(get_slow()).await
        });
        assert_eq!(a.unwrap().status(), StatusCode::OK);
        let busy = b.unwrap();
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.headers().get(header::RETRY_AFTER).unwrap(), "1");
        assert_eq!(body_json(busy).await["code"], "busy");
        // Once the first is answered, the next is taken.
        assert_eq!(
            app.oneshot(get_slow()).await.unwrap().status(),
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn only_configured_origins_may_call_from_a_browser() {
        let settings = HttpSettings {
            cors_origins: vec!["https://Shop.example/".into()],
            ..HttpSettings::default()
        };
        let app = app_with(Router::new().route("/", get(live)), &settings);
        let ask = |method: &str, origin: &str, preflight: bool| {
            let mut req = Request::builder()
                .method(method)
                .uri("/")
                .header("origin", origin);
            if preflight {
                req = req.header("access-control-request-method", "POST").header(
                    "access-control-request-headers",
                    "content-type, authorization",
                );
            }
            app.clone().oneshot(req.body(Body::empty()).unwrap())
        };
        // The allowed origin's preflight, and its request: it may read the answer.
        let pre = ask("OPTIONS", "https://shop.example", true).await.unwrap();
        assert_eq!(pre.status(), StatusCode::NO_CONTENT);
        let h = pre.headers();
        assert_eq!(h["access-control-allow-origin"], "https://shop.example");
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert!(
            h["access-control-allow-methods"]
                .to_str()
                .unwrap()
                .contains("POST")
        );
        assert!(
            h["access-control-allow-headers"]
                .to_str()
                .unwrap()
                .contains("authorization")
        );
        let answer = ask("GET", "https://shop.example", false).await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(
            answer.headers()["access-control-allow-origin"],
            "https://shop.example"
        );
        assert!(
            answer.headers()["access-control-expose-headers"]
                .to_str()
                .unwrap()
                .contains("x-request-id")
        );
        // Another origin: its preflight refused, and its answers not readable by its page.
        let pre = ask("OPTIONS", "https://evil.example", true).await.unwrap();
        assert_eq!(pre.status(), StatusCode::FORBIDDEN);
        assert!(!pre.headers().contains_key("access-control-allow-origin"));
        assert_eq!(body_json(pre).await["code"], "origin_not_allowed");
        let answer = ask("GET", "https://evil.example", false).await.unwrap();
        assert!(!answer.headers().contains_key("access-control-allow-origin"));
        // With none configured, no origin is let in.
        let closed = app_with(
            Router::new().route("/", get(live)),
            &HttpSettings::default(),
        );
        let req = Request::builder()
            .method("OPTIONS")
            .uri("/")
            .header("origin", "https://shop.example")
            .header("access-control-request-method", "GET")
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            closed.oneshot(req).await.unwrap().status(),
            StatusCode::FORBIDDEN
        );
    }

    #[tokio::test]
    async fn every_answer_carries_the_security_headers() {
        let app = app(Router::new().route("/", get(live)));
        for path in ["/", "/nowhere", "/health/live"] {
            let req = Request::builder().uri(path).body(Body::empty()).unwrap();
            let response = app.clone().oneshot(req).await.unwrap();
            let headers = response.headers();
            assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
            assert_eq!(headers["x-frame-options"], "DENY", "{path}");
            assert_eq!(
                headers["content-security-policy"], "frame-ancestors 'none'",
                "{path}"
            );
            assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        }
    }

    #[tokio::test]
    async fn long_paths_reach_the_router_and_get_a_problem() {
        let path = format!("/{}", "a".repeat(60_000));
        let raw = format!("GET {path} HTTP/1.1\r\nHost: kassa\r\nConnection: close\r\n\r\n");
        let answer = exchange(app(Router::new()), raw.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 404"), "{answer:.200}");
        assert!(
            answer.contains("content-type: application/problem+json"),
            "{answer:.200}"
        );
        assert!(answer.contains("route_not_found"), "{answer:.200}");
    }

    /// hyper answers a request head it cannot parse itself, before any service runs; the
    /// connection wrapper turns that answer into a problem.
    #[tokio::test]
    async fn heads_hyper_cannot_parse_get_a_problem() {
        let control = b"GET / HTTP/1.1\r\nHost: kassa\r\nX-Note: a\x01b\r\n\r\n";
        let long = format!(
            "GET /{} HTTP/1.1\r\nHost: kassa\r\n\r\n",
            "a".repeat(70_000)
        );
        let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\nHost: kassa\r\n{many}\r\n");
        for (raw, status, code) in [
            (&control[..], "400", "malformed_request"),
            (long.as_bytes(), "414", "uri_too_long"),
            (many.as_bytes(), "431", "headers_too_large"),
        ] {
            let answer = exchange(app(Router::new()), raw).await;
            assert!(
                answer.starts_with(&format!("HTTP/1.1 {status} ")),
                "{answer:.200}"
            );
            assert!(
                answer.contains("content-type: application/problem+json"),
                "{answer:.200}"
            );
            let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
            let problem: serde_json::Value = serde_json::from_str(body).expect(body);
            assert_eq!(problem["code"], code);
            assert_eq!(problem["status"].to_string(), status);
        }
    }
}
