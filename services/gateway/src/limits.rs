//! Rate limits, as seed 004's gateway applies them: sign-up and sign-in (`/api/auth`) 50 per 15
//! minutes per client, order creation (`/api/order/create`) 10 per minute, both configurable.
//! (Seed 004 counted every `/api/order` request, so a client following its order's status
//! used up its orders; kassa counts the creations.) A
//! request over the limit is answered 429 with `Retry-After` (the seconds until the client's
//! window ends) and reaches no service.
//!
//! Counts are kept in the cache (Redis when distributed), so every gateway replica counts
//! against the same limit. When the cache does not answer, requests go through uncounted: a
//! limit protects the services, and is not worth refusing every client over.

use std::{str::FromStr, sync::Arc, time::Duration};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderName, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use kassa_platform::{
    cache::Cache,
    http::{ApiError, ClientAddr},
    service::{BuildError, Options, Setting},
};

pub const AUTH_RATE_LIMIT: Setting = Setting {
    name: "auth-rate-limit",
    default: "50/15m",
    help: "Requests to /api/auth per client: COUNT/WINDOW (50/15m, 5/30s, 1000/1h), or off",
    secret: false,
};

pub const ORDER_RATE_LIMIT: Setting = Setting {
    name: "order-rate-limit",
    default: "10/1m",
    help: "Orders placed through /api/order/create per client: COUNT/WINDOW, or off",
    secret: false,
};

pub const CLIENT_IP_HEADER: Setting = Setting {
    name: "client-ip-header",
    default: "",
    help: "Header that names the client behind a trusted proxy (X-Forwarded-For: its first \
           address); empty: the connection's address",
    secret: false,
};

/// At most `max` requests per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u64,
    pub window: Duration,
}

/// A limit as configured: `COUNT/WINDOW`, the window a number and `s`, `m` or `h`; or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Configured(pub Option<Limit>);

impl FromStr for Configured {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.eq_ignore_ascii_case("off") {
            return Ok(Configured(None));
        }
        let bad = || "expected COUNT/WINDOW such as 50/15m (s, m or h), or off".to_owned();
        let (max, window) = text.split_once('/').ok_or_else(bad)?;
        let max: u64 = max.trim().parse().map_err(|_| bad())?;
        let window = window.trim();
        let unit = match window.chars().last() {
            Some('s') => 1,
            Some('m') => 60,
            Some('h') => 3600,
            _ => return Err(bad()),
        };
        let count: u64 = window[..window.len() - 1].parse().map_err(|_| bad())?;
        if max == 0 || count == 0 {
            return Err(
                "a limit lets at least one request through in a window of some time; \
                        say off for none"
                    .into(),
            );
        }
        Ok(Configured(Some(Limit {
            max,
            window: Duration::from_secs(count.saturating_mul(unit)),
        })))
    }
}

/// A limit on the paths under some prefixes, counted together.
#[derive(Debug, Clone)]
pub struct Rule {
    /// What is counted, in the counter's key and the answer: `/api/auth`.
    pub name: &'static str,
    /// The paths counted: the gateway's and the service's own (which the gateway forwards
    /// too), so that neither is a way around the limit.
    pub prefixes: &'static [&'static str],
    pub limit: Limit,
}

impl Rule {
    /// Whether the rule counts requests to `path`.
    pub fn covers(&self, path: &str) -> bool {
        self.prefixes.iter().any(|prefix| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }
}

pub struct Limiter {
    pub rules: Vec<Rule>,
    cache: Arc<dyn Cache>,
    client_header: Option<HeaderName>,
}

impl Limiter {
    pub fn from_options(options: &Options, cache: Arc<dyn Cache>) -> Result<Self, BuildError> {
        let mut rules = Vec::new();
        let counted: [(&Setting, &'static str, &'static [&'static str]); 2] = [
            (&AUTH_RATE_LIMIT, "/api/auth", &["/api/auth", "/auth"]),
            (
                &ORDER_RATE_LIMIT,
                "/api/order/create",
                &["/api/order/create", "/order/create"],
            ),
        ];
        for (setting, name, prefixes) in counted {
            if let Configured(Some(limit)) = options.get(setting)? {
                rules.push(Rule {
                    name,
                    prefixes,
                    limit,
                });
            }
        }
        let header: String = options.get(&CLIENT_IP_HEADER)?;
        let client_header = match header.trim() {
            "" => None,
            name => Some(
                HeaderName::from_str(name)
                    .map_err(|e| BuildError::setting(&CLIENT_IP_HEADER, e.to_string()))?,
            ),
        };
        Ok(Limiter {
            rules,
            cache,
            client_header,
        })
    }

    /// Who is counted: the trusted proxy's word for it when there is one (the last address of
    /// the header, the one the proxy added: those before it are the client's own say), else
    /// the connection's address; requests from within this process count together.
    fn client(&self, req: &Request) -> String {
        let named = self.client_header.as_ref().and_then(|name| {
            let value = req.headers().get(name)?.to_str().ok()?;
            let last = value.rsplit(',').next()?.trim();
            (!last.is_empty()).then(|| last.to_owned())
        });
        named
            .or_else(|| {
                req.extensions()
                    .get::<ConnectInfo<ClientAddr>>()
                    .map(|ConnectInfo(ClientAddr(addr))| addr.ip().to_string())
            })
            .unwrap_or_else(|| "in-process".to_owned())
    }
}

/// The middleware: counts the request against the rule that covers its path, if any.
pub async fn limit(State(limiter): State<Arc<Limiter>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let Some(rule) = limiter.rules.iter().find(|r| r.covers(path)) else {
        return next.run(req).await;
    };
    let key = format!("ratelimit:{}:{}", rule.name, limiter.client(&req));
    match limiter.cache.count(&key, rule.limit.window).await {
        Some((count, left)) if count > rule.limit.max => {
            let seconds = u32::try_from(left.as_millis().div_ceil(1000))
                .unwrap_or(u32::MAX)
                .max(1);
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "Too many requests to {}: at most {} per {} s from one client. Try again in \
                     {seconds} s.",
                    rule.name,
                    rule.limit.max,
                    rule.limit.window.as_secs()
                ),
            )
            .with_retry_after(seconds)
            .enveloped()
            .into_response()
        }
        Some(_) => next.run(req).await,
        None => {
            tracing::warn!(
                rule = rule.name,
                "rate limit not counted: the cache did not answer"
            );
            next.run(req).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_read_as_count_per_window() {
        let read = |t: &str| t.parse::<Configured>();
        assert_eq!(
            read("50/15m"),
            Ok(Configured(Some(Limit {
                max: 50,
                window: Duration::from_secs(900)
            })))
        );
        assert_eq!(
            read("5/30s").unwrap().0.unwrap().window,
            Duration::from_secs(30)
        );
        assert_eq!(
            read("1000/1h").unwrap().0.unwrap().window,
            Duration::from_secs(3600)
        );
        assert_eq!(read("OFF"), Ok(Configured(None)));
        for bad in ["50", "50/15", "50/m", "0/1m", "5/0s", "x/1m", "50/15d", ""] {
            assert!(read(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_rule_covers_its_prefix_and_what_is_below_it() {
        let rule = Rule {
            name: "/api/auth",
            prefixes: &["/api/auth", "/auth"],
            limit: Limit {
                max: 1,
                window: Duration::from_secs(1),
            },
        };
        assert!(rule.covers("/api/auth"));
        assert!(rule.covers("/api/auth/signin"));
        assert!(!rule.covers("/api/authors"));
        assert!(rule.covers("/auth/signin"));
        assert!(!rule.covers("/authors"));
    }
}
