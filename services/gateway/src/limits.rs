//! Rate limits, as seed 004's gateway applies them: sign-up and sign-in (`/api/auth`) 50 per 15
//! minutes per client, order creation (`/api/order/create`) 10 per minute, both configurable.
//! (Seed 004 counted every `/api/order` request, so a client following its order's status
//! used up its orders; kassa counts the creations.) The routes a till or a kiosk places orders
//! through (seed 003's `POST /api/orders`, seed 001's `CreateOrder`) are limited too, at a pace
//! a busy counter keeps (600 a minute; tills behind one address count together). Paths are compared without regard to letter case or repeated slashes; paths with
//! dot segments never get this far (`kassa_platform::http::refused_path`).
//!
//! A client is its connection's address, or, when the connection comes from a trusted proxy
//! (`--trusted-proxies`, loopback by default) and `--client-ip-header` is set, the address the
//! proxy appended to that header. An IPv6 client is counted by its /64, the block one
//! subscriber is given. A
//! request over the limit is answered 429 with `Retry-After` (the seconds until the client's
//! window ends) and reaches no service.
//!
//! Counts are kept in the cache (Redis when distributed), so every gateway replica counts
//! against the same limit. When the cache does not answer, requests go through uncounted: a
//! limit protects the services, and is not worth refusing every client over.

use std::{str::FromStr, sync::Arc, time::Duration};

use std::net::IpAddr;

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderName, Method, StatusCode},
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

pub const POS_ORDER_RATE_LIMIT: Setting = Setting {
    name: "pos-order-rate-limit",
    default: "600/1m",
    help: "Orders placed through POST /api/orders and seed 001's CreateOrder per client (a till \
           or kiosk): COUNT/WINDOW, or off",
    secret: false,
};

pub const SIGNIN_ACCOUNT_LIMIT: Setting = Setting {
    name: "signin-account-limit",
    default: "10/15m",
    help: "Sign-ins to one account, from any number of clients: COUNT/WINDOW, or off",
    secret: false,
};

pub const CLIENT_IP_HEADER: Setting = Setting {
    name: "client-ip-header",
    default: "",
    help: "Header in which a trusted proxy names the client (X-Forwarded-For: the address it \
           appended, the last); empty: the connection's address",
    secret: false,
};

pub const TRUSTED_PROXIES: Setting = Setting {
    name: "trusted-proxies",
    default: "127.0.0.0/8,::1/128",
    help: "Addresses (CIDR blocks, comma-separated) whose connections' --client-ip-header is \
           believed; from any other address the header is ignored",
    secret: false,
};

/// A block of addresses: `10.0.0.0/8`, `2001:db8::/32`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    net: IpAddr,
    bits: u8,
}

impl FromStr for Block {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (addr, bits) = match text.split_once('/') {
            Some((addr, bits)) => (addr, Some(bits)),
            None => (text, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{text}` is not an address or a CIDR block"))?;
        let most = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            Some(bits) => bits
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= most)
                .ok_or_else(|| format!("`{text}`: the prefix length must be 0 to {most}"))?,
            None => most,
        };
        Ok(Block { net, bits })
    }
}

impl Block {
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.net, canonical(addr)) {
            (IpAddr::V4(net), IpAddr::V4(addr)) => {
                prefix(u32::from(net).into(), 32, self.bits)
                    == prefix(u32::from(addr).into(), 32, self.bits)
            }
            (IpAddr::V6(net), IpAddr::V6(addr)) => {
                prefix(u128::from(net), 128, self.bits) == prefix(u128::from(addr), 128, self.bits)
            }
            _ => false,
        }
    }
}

/// The first `bits` of a `width`-bit address.
fn prefix(addr: u128, width: u32, bits: u8) -> u128 {
    if bits == 0 {
        0
    } else {
        addr >> (width - u32::from(bits))
    }
}

/// An IPv4 address written as IPv6 (`::ffff:192.0.2.1`) is the IPv4 address.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// Who a limit counts: an IPv4 address, or an IPv6 address's /64.
pub fn counted_as(addr: IpAddr) -> String {
    match canonical(addr) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let block = u128::from(v6) & !((1u128 << 64) - 1);
            format!("{}/64", std::net::Ipv6Addr::from(block))
        }
    }
}

/// An address as a proxy writes it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]:443`.
fn address_in(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
}

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
    /// The methods counted; `None`: every one.
    pub methods: Option<&'static [Method]>,
    pub limit: Limit,
}

impl Rule {
    /// Whether the rule counts `method` requests to `path`.
    pub fn covers(&self, method: &Method, path: &str) -> bool {
        self.methods.is_none_or(|methods| methods.contains(method)) && self.covers_path(path)
    }

    /// Whether the rule counts requests to `path` (by some method), whatever the letter case
    /// or repeated slashes.
    pub fn covers_path(&self, path: &str) -> bool {
        let path = normalised(path);
        self.prefixes
            .iter()
            .any(|prefix| kassa_platform::http::under(&path, &prefix.to_ascii_lowercase()))
    }
}

/// `path` in lower case, with runs of slashes as one.
fn normalised(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if c == '/' && out.ends_with('/') {
            continue;
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Where seed 004's customers place orders.
const CUSTOMER_ORDERS: &[&str] = &["/api/order/create", "/order/create"];

/// Where tills and kiosks place orders: seed 003's and seed 001's routes.
const POS_ORDERS: &[&str] = &[
    "/api/orders",
    "/api/order/createorder",
    "/orders/createorder",
];

pub struct Limiter {
    pub rules: Vec<Rule>,
    /// Sign-ins to one account, whichever clients send them.
    pub per_account: Option<Limit>,
    /// The most of a sign-in's body read to find its account.
    body_limit: usize,
    cache: Arc<dyn Cache>,
    client_header: Option<HeaderName>,
    trusted: Vec<Block>,
}

impl Limiter {
    pub fn from_options(
        options: &Options,
        cache: Arc<dyn Cache>,
        body_limit: usize,
    ) -> Result<Self, BuildError> {
        let mut rules = Vec::new();
        type Counted = (
            &'static Setting,
            &'static str,
            &'static [&'static str],
            Option<&'static [Method]>,
        );
        let counted: [Counted; 3] = [
            (&AUTH_RATE_LIMIT, "/api/auth", &["/api/auth", "/auth"], None),
            (
                &ORDER_RATE_LIMIT,
                "/api/order/create",
                CUSTOMER_ORDERS,
                None,
            ),
            (
                &POS_ORDER_RATE_LIMIT,
                "placing orders",
                POS_ORDERS,
                Some(&[Method::POST]),
            ),
        ];
        for (setting, name, prefixes, methods) in counted {
            if let Configured(Some(limit)) = options.get(setting)? {
                rules.push(Rule {
                    name,
                    prefixes,
                    methods,
                    limit,
                });
            }
        }
        let trusted_text: String = options.get(&TRUSTED_PROXIES)?;
        let trusted = trusted_text
            .split(',')
            .filter(|b| !b.trim().is_empty())
            .map(str::parse)
            .collect::<Result<Vec<Block>, String>>()
            .map_err(|e| BuildError::setting(&TRUSTED_PROXIES, e))?;
        let header: String = options.get(&CLIENT_IP_HEADER)?;
        let client_header = match header.trim() {
            "" => None,
            name => Some(
                HeaderName::from_str(name)
                    .map_err(|e| BuildError::setting(&CLIENT_IP_HEADER, e.to_string()))?,
            ),
        };
        let Configured(per_account) = options.get(&SIGNIN_ACCOUNT_LIMIT)?;
        Ok(Limiter {
            rules,
            per_account,
            body_limit,
            cache,
            client_header,
            trusted,
        })
    }

    /// Who is counted: the connection's address, or, when it is a trusted proxy's, the
    /// proxy's word for the client (the last address of the header, the one the proxy added:
    /// those before it are the client's own say); requests from within this process count
    /// together.
    fn client(&self, req: &Request) -> String {
        let Some(peer) = req
            .extensions()
            .get::<ConnectInfo<ClientAddr>>()
            .map(|ConnectInfo(ClientAddr(addr))| addr.ip())
        else {
            return "in-process".to_owned();
        };
        let named = self
            .client_header
            .as_ref()
            .filter(|_| self.trusted.iter().any(|block| block.contains(peer)))
            .and_then(|name| {
                let value = req.headers().get(name)?.to_str().ok()?;
                address_in(value.rsplit(',').next()?)
            });
        counted_as(named.unwrap_or(peer))
    }
}

/// The middleware: counts the request against the rule that covers its path, if any, and a
/// sign-in also against its account.
pub async fn limit(State(limiter): State<Arc<Limiter>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if let Some(rule) = limiter.rules.iter().find(|r| r.covers(req.method(), path)) {
        let key = format!("ratelimit:{}:{}", rule.name, limiter.client(&req));
        if let Some(refused) = limiter
            .over(&key, rule.name, rule.limit, "one client")
            .await
        {
            return refused;
        }
    }
    let Some(per_account) = limiter
        .per_account
        .filter(|_| req.method() == Method::POST && is_signin(path))
    else {
        return next.run(req).await;
    };
    // The account is named in the body: read it (as far as a service would take), count it,
    // and hand the same bytes on.
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, limiter.body_limit).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "The body is larger than this service accepts.",
            )
            .into_response();
        }
    };
    if let Some(email) = email_in(&bytes) {
        let key = format!("ratelimit:signin-account:{email}");
        if let Some(refused) = limiter
            .over(&key, "sign-in", per_account, "one account")
            .await
        {
            return refused;
        }
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

/// Whether `path` signs in: seed 004's `/auth/signin`, under the gateway's `/api` too.
pub fn is_signin(path: &str) -> bool {
    matches!(
        normalised(path).as_str(),
        "/auth/signin" | "/api/auth/signin"
    )
}

/// The account a sign-in names: its `email`, trimmed and in lower case, as users finds it.
fn email_in(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let email = value.get("email")?.as_str()?.trim().to_ascii_lowercase();
    (!email.is_empty() && email.len() <= 320).then_some(email)
}

impl Limiter {
    /// Counts one more under `key`; the answer to send instead when that is over `limit`.
    async fn over(&self, key: &str, what: &str, limit: Limit, from: &str) -> Option<Response> {
        match self.cache.count(key, limit.window).await {
            Some((count, left)) if count > limit.max => {
                let seconds = u32::try_from(left.as_millis().div_ceil(1000))
                    .unwrap_or(u32::MAX)
                    .max(1);
                Some(
                    ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "rate_limited",
                        format!(
                            "Too many requests to {what}: at most {} per {} s from {from}. Try \
                             again in {seconds} s.",
                            limit.max,
                            limit.window.as_secs()
                        ),
                    )
                    .with_retry_after(seconds)
                    .enveloped()
                    .into_response(),
                )
            }
            Some(_) => None,
            None => {
                tracing::warn!(what, "rate limit not counted: the cache did not answer");
                None
            }
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
        let limit = Limit {
            max: 1,
            window: Duration::from_secs(1),
        };
        let rule = Rule {
            name: "/api/auth",
            prefixes: &["/api/auth", "/auth"],
            methods: None,
            limit,
        };
        let get = Method::GET;
        assert!(rule.covers(&get, "/api/auth"));
        assert!(rule.covers(&get, "/api/auth/signin"));
        assert!(!rule.covers(&get, "/api/authors"));
        assert!(rule.covers(&get, "/auth/signin"));
        assert!(!rule.covers(&get, "/authors"));
        // Letter case and doubled slashes change nothing.
        assert!(rule.covers(&get, "/API/Auth/SignIn"));
        assert!(rule.covers(&get, "//api//auth/signin"));
        let orders = Rule {
            name: "placing orders",
            prefixes: POS_ORDERS,
            methods: Some(&[Method::POST]),
            limit,
        };
        for placing in [
            "/api/orders",
            "/api/Order/CreateOrder",
            "/orders/CreateOrder",
        ] {
            assert!(orders.covers(&Method::POST, placing), "{placing}");
            assert!(!orders.covers(&Method::GET, placing), "{placing}");
        }
        assert!(!orders.covers(&Method::POST, "/api/Order/GetAllOrders"));
    }

    #[test]
    fn a_sign_in_names_its_account() {
        assert!(is_signin("/api/auth/signin"));
        assert!(is_signin("/AUTH//SignIn"));
        assert!(!is_signin("/api/auth/signup"));
        assert_eq!(
            email_in(br#"{"email":" Ada@Example.com ","password":"x"}"#).as_deref(),
            Some("ada@example.com")
        );
        assert_eq!(email_in(br#"{"email":""}"#), None);
        assert_eq!(email_in(b"not json"), None);
        assert_eq!(email_in(br#"{"email":7}"#), None);
    }

    #[test]
    fn clients_are_addresses_and_ipv6_clients_their_64() {
        let ip = |t: &str| t.parse::<IpAddr>().unwrap();
        assert_eq!(counted_as(ip("203.0.113.7")), "203.0.113.7");
        assert_eq!(counted_as(ip("::ffff:203.0.113.7")), "203.0.113.7");
        assert_eq!(
            counted_as(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            counted_as(ip("2001:db8:1:2::1")),
            counted_as(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            counted_as(ip("2001:db8:1:2::1")),
            counted_as(ip("2001:db8:1:3::1"))
        );
        for (text, addr) in [
            ("192.0.2.1", "192.0.2.1"),
            (" 192.0.2.1:4711", "192.0.2.1"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("2001:db8::1", "2001:db8::1"),
        ] {
            assert_eq!(address_in(text), Some(ip(addr)), "{text}");
        }
        assert_eq!(address_in("unknown"), None);
    }

    #[test]
    fn blocks_hold_their_addresses() {
        let block = |t: &str| t.parse::<Block>().unwrap();
        let ip = |t: &str| t.parse::<IpAddr>().unwrap();
        assert!(block("127.0.0.0/8").contains(ip("127.1.2.3")));
        assert!(block("127.0.0.0/8").contains(ip("::ffff:127.0.0.1")));
        assert!(!block("127.0.0.0/8").contains(ip("128.0.0.1")));
        assert!(block("10.1.2.3").contains(ip("10.1.2.3")));
        assert!(!block("10.1.2.3").contains(ip("10.1.2.4")));
        assert!(block("::1/128").contains(ip("::1")));
        assert!(block("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
        assert!(!block("2001:db8::/32").contains(ip("2001:db9::1")));
        assert!(block("0.0.0.0/0").contains(ip("198.51.100.1")));
        assert!(!block("0.0.0.0/0").contains(ip("::1")));
        for bad in ["", "10.0.0.0/33", "::/129", "example.com", "10.0.0.0/x"] {
            assert!(bad.parse::<Block>().is_err(), "{bad}");
        }
    }
}
