//! The API gateway: one entry point (port 3000) that forwards each service's route prefixes
//! (as the service declares them) to it, in this process when it runs here, over HTTP when it
//! runs elsewhere. Its Swagger UI shows every service's API.
//!
//! - `limits.rs`: seed 004's rate limits

pub mod limits;

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::any,
};
use kassa_platform::{
    http::{ApiError, CORRELATION_ID, REQUEST_ID, RequestIds, openapi},
    service::{BuildError, Infra, Reach, Service, ServiceParts},
};
use tower::ServiceExt;
use utoipa::openapi::{Ref, RefOr};

/// The gateway: keeps nothing, consumes nothing, and routes to every service that declares
/// routes.
pub static SERVICE: Service = Service {
    name: "gateway",
    default_port: 3000,
    migrations: None,
    routes: &[],
    // Every route it forwards is its service's, whose rules decide who may call it.
    access: &[&[kassa_platform::access::Rule::new(
        kassa_platform::access::Verb::Get,
        kassa_platform::access::FORWARDED,
        kassa_platform::access::Policy::PUBLIC,
    )]],
    consumes: &[],
    settings: &[
        limits::AUTH_RATE_LIMIT,
        limits::ORDER_RATE_LIMIT,
        limits::POS_ORDER_RATE_LIMIT,
        limits::SIGNIN_ACCOUNT_LIMIT,
        limits::CLIENT_IP_HEADER,
        limits::TRUSTED_PROXIES,
    ],
    tasks: &[],
    openapi: || openapi(Vec::new(), &[], None),
    build,
};

fn build(infra: &Infra) -> Result<ServiceParts, BuildError> {
    let mut router = Router::new();
    let mut docs = Vec::new();
    for peer in &infra.peers {
        let upstream = match &peer.reach {
            Reach::InProcess(router) => Upstream::InProcess(router.clone()),
            Reach::Url(base) => Upstream::http(base, infra.http.request_timeout).map_err(|e| {
                BuildError::Start(format!("the HTTP client for {}: {e}", peer.service.name))
            })?,
        };
        let route = Arc::new(Route {
            name: peer.service.name,
            upstream,
            body_limit: infra.http.body_limit,
        });
        for prefix in peer.service.routes {
            router = router
                .route(prefix, any(forward).with_state(route.clone()))
                .route(
                    &format!("{prefix}/{{*rest}}"),
                    any(forward).with_state(route.clone()),
                );
        }
        docs.push(peer.service);
    }
    let limiter = Arc::new(limits::Limiter::from_options(
        &infra.options,
        infra.cache.clone(),
        infra.http.body_limit,
    )?);
    let (rules, per_account) = (limiter.rules.clone(), limiter.per_account);
    let router = router.layer(axum::middleware::from_fn_with_state(limiter, limits::limit));
    Ok(ServiceParts::api(router, move || {
        openapi(
            docs.iter().map(|service| forwarded_part(service)).collect(),
            &rules,
            per_account,
        )
    }))
}

/// Where a service's API is reached from the gateway.
#[derive(Clone)]
enum Upstream {
    /// The service runs in this process: call its router directly.
    InProcess(Router),
    /// The service runs elsewhere: forward over HTTP to this base URL.
    Http {
        base: String,
        client: reqwest::Client,
    },
}

impl Upstream {
    /// An HTTP upstream with a pooled client and a deadline per request.
    fn http(base: &str, timeout: Duration) -> Result<Self, reqwest::Error> {
        kassa_platform::http::https_ready();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .pool_max_idle_per_host(256)
            .pool_idle_timeout(kassa_platform::http::CLIENT_IDLE_TIMEOUT)
            .build()?;
        Ok(Upstream::Http {
            base: base.trim_end_matches('/').to_owned(),
            client,
        })
    }
}

struct Route {
    name: &'static str,
    upstream: Upstream,
    body_limit: usize,
}

/// Headers that describe one hop, not the message.
const HOP_BY_HOP: [HeaderName; 4] = [
    header::CONNECTION,
    header::HOST,
    header::TRANSFER_ENCODING,
    header::CONTENT_LENGTH,
];

async fn forward(State(route): State<Arc<Route>>, ids: RequestIds, mut req: Request) -> Response {
    // The service logs and publishes under the ids the gateway gave the request.
    if let Ok(v) = HeaderValue::from_str(&ids.request_id) {
        req.headers_mut().insert(REQUEST_ID, v);
    }
    if let Ok(v) = HeaderValue::from_str(&ids.correlation_id) {
        req.headers_mut().insert(CORRELATION_ID, v);
    }
    match &route.upstream {
        Upstream::InProcess(router) => match router.clone().oneshot(fresh(req)).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
        Upstream::Http { base, client } => over_http(&route, base, client, req)
            .await
            .unwrap_or_else(IntoResponse::into_response),
    }
}

/// The same request without the gateway's own extensions (its matched route and path
/// parameters), as the service would receive it over the network.
fn fresh(req: Request) -> Request {
    let (parts, body) = req.into_parts();
    let mut out = Request::new(body);
    *out.method_mut() = parts.method;
    *out.uri_mut() = parts.uri;
    *out.version_mut() = parts.version;
    *out.headers_mut() = parts.headers;
    out
}

async fn over_http(
    route: &Route,
    base: &str,
    client: &reqwest::Client,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, route.body_limit)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "The request body is larger than this endpoint accepts.",
            )
        })?;
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut upstream = client
        .request(parts.method, format!("{base}{path}"))
        .body(body);
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(name) {
            upstream = upstream.header(name, value);
        }
    }
    let answer = upstream.send().await.map_err(|e| {
        tracing::warn!(service = route.name, error = %e, "upstream unreachable");
        if e.is_timeout() {
            ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                format!("The {} service did not answer in time.", route.name),
            )
        } else {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "upstream_unavailable",
                format!(
                    "The {} service is unreachable; try again shortly.",
                    route.name
                ),
            )
        }
    })?;
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !HOP_BY_HOP.contains(name) {
            response = response.header(name, value);
        }
    }
    let bytes = answer.bytes().await.map_err(|_| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_unavailable",
            format!("The {} service broke off its answer.", route.name),
        )
    })?;
    response
        .body(Body::from(bytes))
        .map_err(|_| ApiError::internal())
}

/// The operations of `service`'s document the gateway forwards to it: those under its route
/// prefixes (not its internal routes, which only kassa's services call, on its own port).
pub fn forwarded_part(service: &Service) -> utoipa::openapi::OpenApi {
    let mut doc = service.document();
    doc.paths.paths.retain(|path, _| service.forwards(path));
    doc
}

/// The gateway's OpenAPI document: the routed services' documents in one, with the answers of
/// its rate limits (`rules`) on the operations they cover.
pub fn openapi(
    parts: Vec<utoipa::openapi::OpenApi>,
    rules: &[limits::Rule],
    per_account: Option<limits::Limit>,
) -> utoipa::openapi::OpenApi {
    let mut doc = utoipa::openapi::OpenApiBuilder::new()
        .info(
            utoipa::openapi::InfoBuilder::new()
                .title("kassa gateway")
                .description(Some("Every kassa API behind one entry point."))
                .version(env!("CARGO_PKG_VERSION"))
                .build(),
        )
        .build();
    for part in parts {
        doc.merge(part);
    }
    // Between the client and a service that runs elsewhere, the forwarding itself can fail.
    let failures = [
        (
            502,
            "BadGateway",
            "The service behind the gateway is unreachable or broke off its answer \
             (`upstream_unavailable`).",
        ),
        (
            504,
            "GatewayTimeout",
            "The service behind the gateway did not answer in time (`upstream_timeout`); the \
             request may or may not have taken effect.",
        ),
    ];
    for item in doc.paths.paths.values_mut() {
        for operation in openapi::operations_mut(item) {
            for (status, name, _) in failures {
                operation.responses.responses.insert(
                    status.to_string(),
                    RefOr::Ref(Ref::from_response_name(name)),
                );
            }
        }
    }
    for (path, item) in doc.paths.paths.iter_mut() {
        for rule in rules.iter().filter(|r| r.covers_path(path)) {
            let description = format!(
                "Too many requests from this client: at most {} per {} s (`rate_limited`). \
                 `Retry-After` says when the window ends.",
                rule.limit.max,
                rule.limit.window.as_secs()
            );
            let operations = [
                (axum::http::Method::GET, item.get.as_mut()),
                (axum::http::Method::POST, item.post.as_mut()),
                (axum::http::Method::PUT, item.put.as_mut()),
                (axum::http::Method::PATCH, item.patch.as_mut()),
                (axum::http::Method::DELETE, item.delete.as_mut()),
            ];
            for (method, operation) in operations {
                if let Some(operation) = operation.filter(|_| rule.covers(&method, path)) {
                    operation.responses.responses.insert(
                        "429".into(),
                        RefOr::T(openapi::problem_response(429, &description)),
                    );
                }
            }
        }
    }
    if let Some(limit) = per_account {
        for (path, item) in doc.paths.paths.iter_mut() {
            let Some(operation) = item.post.as_mut().filter(|_| limits::is_signin(path)) else {
                continue;
            };
            operation
                .responses
                .responses
                .entry("429".into())
                .or_insert_with(|| {
                    RefOr::T(openapi::problem_response(
                        429,
                        &format!(
                            "Too many sign-ins to this account, from any clients: at most {} per \
                             {} s (`rate_limited`). `Retry-After` says when the window ends.",
                            limit.max,
                            limit.window.as_secs()
                        ),
                    ))
                });
        }
    }
    let components = doc.components.get_or_insert_with(Default::default);
    for (status, name, description) in failures {
        components.responses.insert(
            name.into(),
            RefOr::T(openapi::problem_response(status, description)),
        );
    }
    doc
}
