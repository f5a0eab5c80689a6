//! Who is calling: the tokens kassa issues and accepts, and the API keys machines show
//! ([`crate::principals`]), read into a [`Caller`].
//!
//! A token is a JWT signed with HMAC-SHA256 (HS256) from the installation's secret, carrying the
//! user's id (`userId`), `email` and [`Role`] (`customer`, `staff`, `admin`, or `service` for
//! kassa's own services calling each other), when it was issued (`iat`) and when it expires
//! (`exp`). A role beyond a customer's is checked against the one the account holds now.
//! Seed 004's clients read the same claims (`userId`, `email`) from the token it issued.
//!
//! Only HS256 is accepted: the header's `alg` must say so (a token that names `none` or another
//! algorithm is refused, whatever its signature), the signature is compared in constant time,
//! and an expired token is refused. A caller shows its token in `Authorization: Bearer …` or,
//! as seed 004's browser clients do, in the `token` cookie; a machine its key in `X-Api-Key`
//! or `Authorization: Bearer`.

use std::fmt;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

/// The smallest secret accepted: 32 bytes, the size of the HMAC-SHA256 output.
pub const MIN_SECRET_BYTES: usize = 32;

/// The installation's signing secret.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// A secret from its configured text; refused shorter than [`MIN_SECRET_BYTES`].
    pub fn new(text: &str) -> Result<Self, String> {
        if text.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "the token secret must be at least {MIN_SECRET_BYTES} bytes long"
            ));
        }
        Ok(Secret(text.as_bytes().to_vec()))
    }

    /// A new random secret (for an embedded installation, which keeps it in its data folder),
    /// as text.
    pub fn generate() -> String {
        let mut bytes = Vec::with_capacity(48);
        for _ in 0..3 {
            bytes.extend_from_slice(Uuid::new_v4().as_bytes());
        }
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes a key of any length.
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC accepts any key length")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// What a caller may do: the role of a person's token or of an API key. Which routes each
/// role may call is each route's [`crate::access::Policy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A person with an account: reads and changes what is theirs.
    Customer,
    /// The shop's staff (a cashier, a gym's trainer): works on everyone's orders and records.
    Staff,
    /// A self-service kiosk: places orders and takes their payment.
    Kiosk,
    /// A pickup dispenser: checks pickup codes and hands out goods.
    Device,
    /// A gym's front desk: members, classes, enrolments and their payments.
    Desk,
    /// The operator's monitoring: reads `/metrics`.
    Monitor,
    /// Everything.
    Admin,
    /// One of kassa's services calling another.
    Service,
}

impl Role {
    pub const ALL: [Role; 8] = [
        Role::Customer,
        Role::Staff,
        Role::Kiosk,
        Role::Device,
        Role::Desk,
        Role::Monitor,
        Role::Admin,
        Role::Service,
    ];

    /// Its name in tokens, keys and commands.
    pub fn name(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Staff => "staff",
            Role::Kiosk => "kiosk",
            Role::Device => "device",
            Role::Desk => "desk",
            Role::Monitor => "monitor",
            Role::Admin => "admin",
            Role::Service => "service",
        }
    }

    /// Whether only a person's stored role may grant it: a token that claims it is checked
    /// against the users service on each request ([`crate::principals`]).
    fn is_kept(self) -> bool {
        !matches!(self, Role::Customer | Role::Service)
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.name().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| {
                format!(
                    "`{text}` is no role; one of: {}",
                    Role::ALL.map(Role::name).join(", ")
                )
            })
    }
}

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claims {
    pub user_id: Uuid,
    pub email: String,
    pub role: Role,
    /// Issued at, in seconds since 1970.
    pub iat: i64,
    /// Expires at, in seconds since 1970.
    pub exp: i64,
    /// The name of the API key these claims stand for; `None` for a token. Never in a token.
    #[serde(skip)]
    pub key: Option<String>,
}

impl Claims {
    /// Claims for `user_id` issued `now`, valid for `lifetime`.
    pub fn new(
        user_id: Uuid,
        email: impl Into<String>,
        role: Role,
        now: DateTime<Utc>,
        lifetime: chrono::Duration,
    ) -> Self {
        Claims {
            user_id,
            email: email.into(),
            role,
            iat: now.timestamp(),
            exp: (now + lifetime).timestamp(),
            key: None,
        }
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a JWT (three base64url parts separated by dots)")]
    Malformed,
    #[error("the token is not signed with HS256")]
    Algorithm,
    #[error("the token's signature is not valid")]
    Signature,
    #[error("the token's claims are not kassa's")]
    Claims,
    #[error("the token has expired")]
    Expired,
}

const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// Signs `claims` with `secret`.
pub fn issue(secret: &Secret, claims: &Claims) -> String {
    // Claims are plain data: serialising them cannot fail.
    let payload = serde_json::to_vec(claims).unwrap_or_default();
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(HEADER),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let mut mac = secret.mac();
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// A token for this process's calls to other services (role `service`), good for five minutes.
pub fn service_token(secret: &Secret) -> String {
    let claims = Claims::new(
        Uuid::nil(),
        "service@kassa.invalid",
        Role::Service,
        Utc::now(),
        chrono::Duration::minutes(5),
    );
    issue(secret, &claims)
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

/// The claims of `token` if `secret` signed it with HS256 and it has not expired at `now`.
pub fn verify(secret: &Secret, token: &str, now: DateTime<Utc>) -> Result<Claims, TokenError> {
    let mut parts = token.trim().split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let decode = |part: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| TokenError::Malformed)
    };
    let header_part = header;
    let header: Header =
        serde_json::from_slice(&decode(header)?).map_err(|_| TokenError::Malformed)?;
    if header.alg != "HS256" {
        return Err(TokenError::Algorithm);
    }
    let mut mac = secret.mac();
    mac.update(format!("{header_part}.{payload}").as_bytes());
    mac.verify_slice(&decode(signature)?)
        .map_err(|_| TokenError::Signature)?;
    let claims: Claims =
        serde_json::from_slice(&decode(payload)?).map_err(|_| TokenError::Claims)?;
    if claims.exp <= now.timestamp() {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// The token a request carries: `Authorization: Bearer …` first, else the `token` cookie.
pub fn token_of(headers: &axum::http::HeaderMap) -> Option<&str> {
    shown_token(headers).map(|(token, _)| token)
}

/// How a request showed its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shown {
    Header,
    /// The `token` cookie, which a browser sends by itself: with an unsafe method, the request
    /// must come from the site itself (see [`cross_site`]).
    Cookie,
    /// The `X-Api-Key` header.
    Key,
}

/// A request's credential: `Authorization: Bearer` (a token or an API key), else the `token`
/// cookie, else `X-Api-Key`. A person's own token comes first, so a machine that holds a key
/// and acts for a signed-in person shows theirs.
fn shown_credential(headers: &axum::http::HeaderMap) -> Option<(&str, Shown)> {
    shown_token(headers).or_else(|| {
        headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(|key| (key.trim(), Shown::Key))
    })
}

fn shown_token(headers: &axum::http::HeaderMap) -> Option<(&str, Shown)> {
    if let Some(value) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = value.trim().split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then_some((token.trim(), Shown::Header));
    }
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == "token").then_some((value.trim(), Shown::Cookie))
        })
}

/// Whether a request that changes something (not GET, HEAD or OPTIONS) was sent by a page of
/// another site, as a browser tells it: `Sec-Fetch-Site: cross-site`, or, from a browser that
/// does not send that, an `Origin` whose host is not the one the request was sent to. A request
/// that says neither is not a browser's, and carries no cookie it did not choose to.
fn cross_site(parts: &axum::http::request::Parts) -> bool {
    use axum::http::{Method, header};
    if matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return false;
    }
    let text = |name| {
        parts
            .headers
            .get(name)
            .and_then(|v: &axum::http::HeaderValue| v.to_str().ok())
    };
    let origin = text(header::ORIGIN);
    // A page of an origin the installation lets call it (KASSA_CORS_ORIGINS) is its own.
    if let (Some(origin), Some(cors)) = (origin, parts.extensions.get::<crate::http::Cors>())
        && cors.allows(origin)
    {
        return false;
    }
    if let Some(site) = text(axum::http::HeaderName::from_static("sec-fetch-site")) {
        return site.eq_ignore_ascii_case("cross-site");
    }
    let Some(origin) = origin else {
        return false;
    };
    // `null` (a sandboxed or privacy-sensitive context) is no site of ours.
    let origin_host = origin.split_once("://").map(|(_, rest)| rest).map(host_of);
    let target = text(header::HOST).map(host_of);
    match (origin_host, target) {
        (Some(origin), Some(target)) => !origin.eq_ignore_ascii_case(target),
        _ => true,
    }
}

/// The host of `host[:port]` (IPv6 literals in brackets kept whole).
fn host_of(authority: &str) -> &str {
    let authority = authority.split('/').next().unwrap_or(authority);
    if authority.starts_with('[') {
        return authority
            .split_once(']')
            .map_or(authority, |(host, _)| &authority[..host.len() + 1]);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// The installation's token secret as every service's HTTP layer holds it (a request
/// extension): `None` where none is configured, and then no token is accepted.
#[derive(Debug, Clone, Default)]
pub struct Tokens(pub Option<Secret>);

/// Who made a request: anonymous when it shows no credential, else the checked claims of its
/// token or what its API key stands for. A credential that does not check (forged, expired,
/// revoked, or shown where no secret is configured) is a 401, never taken for an anonymous
/// call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    Known(Claims),
}

impl Caller {
    /// Its role; `None` for an anonymous caller.
    pub fn role(&self) -> Option<Role> {
        match self {
            Caller::Anonymous => None,
            Caller::Known(claims) => Some(claims.role),
        }
    }

    /// The claims of a caller that must be known: anonymous is a 401.
    pub fn known(&self) -> Result<&Claims, crate::http::ApiError> {
        match self {
            Caller::Known(claims) => Ok(claims),
            Caller::Anonymous => Err(unauthorized(
                "token_required",
                "Sign in and send the token (`Authorization: Bearer …` or the `token` cookie).",
            )),
        }
    }

    /// Whether the caller may read what belongs to `owner`: its owner, or a caller who is not
    /// a customer (the route's policy let it in).
    pub fn may_read(&self, owner: Uuid) -> bool {
        match self {
            Caller::Known(claims) => match claims.role {
                Role::Customer => claims.user_id == owner,
                _ => true,
            },
            Caller::Anonymous => owner.is_nil(),
        }
    }

    /// The caller of a request, from its credential (`Authorization: Bearer`, else the `token`
    /// cookie, else `X-Api-Key`). Once found, it is kept in the request's extensions.
    pub async fn resolve(
        parts: &mut axum::http::request::Parts,
    ) -> Result<Caller, crate::http::ApiError> {
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let caller = match shown_credential(&parts.headers) {
            None => Caller::Anonymous,
            Some((text, Shown::Key)) => Caller::of_key(parts, text).await?,
            Some((text, Shown::Header)) if crate::principals::ShownKey::parse(text).is_some() => {
                Caller::of_key(parts, text).await?
            }
            Some((text, shown)) => Caller::of_token(parts, text, shown).await?,
        };
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }

    async fn of_key(
        parts: &axum::http::request::Parts,
        text: &str,
    ) -> Result<Caller, crate::http::ApiError> {
        let refused = || {
            unauthorized(
                "invalid_key",
                "The API key is not one of this installation's, or it was revoked.",
            )
        };
        let key = crate::principals::ShownKey::parse(text).ok_or_else(refused)?;
        let principals = parts
            .extensions
            .get::<crate::principals::Principals>()
            .ok_or_else(refused)?;
        let record = principals
            .key(&key)
            .await
            .map_err(|e| unavailable(&e))?
            .ok_or_else(refused)?;
        Ok(Caller::Known(Claims {
            user_id: key.id,
            email: String::new(),
            role: record.role,
            iat: 0,
            exp: i64::MAX,
            key: Some(record.name.clone()),
        }))
    }

    async fn of_token(
        parts: &axum::http::request::Parts,
        token: &str,
        shown: Shown,
    ) -> Result<Caller, crate::http::ApiError> {
        if shown == Shown::Cookie && cross_site(parts) {
            return Err(crate::http::ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "cross_site_request",
                "A request from another site may not act with this site's cookie; send the token \
                 as `Authorization: Bearer …`.",
            ));
        }
        let secret = parts
            .extensions
            .get::<Tokens>()
            .and_then(|tokens| tokens.0.as_ref())
            .ok_or_else(|| {
                unauthorized(
                    "invalid_token",
                    "This installation has no token secret configured (KASSA_TOKEN_SECRET), so \
                     it accepts no token.",
                )
            })?;
        let mut claims = verify(secret, token, Utc::now())
            .map_err(|e| unauthorized("invalid_token", format!("{e}; sign in again.")))?;
        // A role beyond a customer's is the one the users service keeps now: a role
        // withdrawn since the token was issued no longer counts.
        if claims.role.is_kept()
            && let Some(principals) = parts.extensions.get::<crate::principals::Principals>()
        {
            claims.role = principals
                .role(claims.user_id)
                .await
                .map_err(|e| unavailable(&e))?
                .ok_or_else(|| {
                    unauthorized("invalid_token", "The token's account no longer exists.")
                })?;
        }
        Ok(Caller::Known(claims))
    }
}

fn unavailable(reason: &str) -> crate::http::ApiError {
    tracing::warn!(
        reason,
        "the users service could not be asked about a credential"
    );
    crate::http::ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "credentials_unavailable",
        "The credential cannot be checked now; try again shortly.",
    )
}

/// What a request is allowed to see and do, for routes a customer shares with others: a
/// signed-in customer sees and acts on their own things only; an anonymous caller (let in
/// where the operator opened the route's group) only what no one owns; every other role the
/// route's policy let in sees everything.
#[derive(Debug, Clone)]
pub struct Access {
    pub caller: Caller,
}

impl Access {
    pub fn new(caller: Caller) -> Self {
        Access { caller }
    }

    /// Whose things the caller may see: `None` everyone's, `Some(user)` that user's own. An
    /// anonymous caller sees those of the nil user, which is no one: what no one owns.
    pub fn sees(&self) -> Result<Option<Uuid>, crate::http::ApiError> {
        Ok(match &self.caller {
            Caller::Anonymous => Some(Uuid::nil()),
            Caller::Known(claims) => match claims.role {
                Role::Customer => Some(claims.user_id),
                _ => None,
            },
        })
    }

    /// Whether the caller may see what belongs to `owner` (`None`: no one). A caller that may
    /// not is told the thing does not exist, so ids of other customers' things cannot be
    /// probed.
    pub fn may_see(&self, owner: Option<Uuid>) -> Result<bool, crate::http::ApiError> {
        Ok(match self.sees()? {
            None => true,
            Some(user) => owner.unwrap_or(Uuid::nil()) == user,
        })
    }

    /// For figures over everyone's things (totals, statistics): customers and anonymous
    /// callers are refused (403).
    pub fn sees_everything(&self) -> Result<(), crate::http::ApiError> {
        match self.sees()? {
            None => Ok(()),
            Some(_) => Err(crate::http::ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "admin_only",
                "Only staff and admins see figures over every customer.",
            )),
        }
    }

    /// For a request that acts for `user` (names them in its body, in `field`): a signed-in
    /// customer acts for themselves only (403 otherwise); the staff, admins, machines and
    /// services act for anyone (a till places a customer's order); anonymous callers for
    /// anyone as well (their group is open), and see nothing of it afterwards.
    pub fn acts_for(&self, user: Uuid, field: &str) -> Result<(), crate::http::ApiError> {
        match &self.caller {
            Caller::Known(claims) if claims.role == Role::Customer && claims.user_id != user => {
                Err(crate::http::ApiError::new(
                    axum::http::StatusCode::FORBIDDEN,
                    "user_mismatch",
                    format!("`{field}` must be the signed-in user's own id."),
                )
                .with_param(field))
            }
            _ => Ok(()),
        }
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Access {
    type Rejection = crate::http::ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Access {
            caller: Caller::resolve(parts).await?,
        })
    }
}

fn unauthorized(code: &'static str, detail: impl Into<String>) -> crate::http::ApiError {
    crate::http::ApiError::new(axum::http::StatusCode::UNAUTHORIZED, code, detail)
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = crate::http::ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Caller::resolve(parts).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret::new("a secret of at least thirty-two bytes!").unwrap()
    }

    fn claims(now: DateTime<Utc>) -> Claims {
        Claims::new(
            Uuid::now_v7(),
            "ada@example.com",
            Role::Customer,
            now,
            chrono::Duration::hours(1),
        )
    }

    #[test]
    fn a_token_reads_back_until_it_expires() {
        let now = Utc::now();
        let claims = claims(now);
        let token = issue(&secret(), &claims);
        assert_eq!(verify(&secret(), &token, now), Ok(claims.clone()));
        let later = now + chrono::Duration::hours(1);
        assert_eq!(verify(&secret(), &token, later), Err(TokenError::Expired));
        // The claims as seed 004's clients read them.
        let payload = token.split('.').nth(1).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(json["userId"], claims.user_id.to_string());
        assert_eq!(json["email"], "ada@example.com");
        assert_eq!(json["role"], "customer");
    }

    #[test]
    fn forged_and_altered_tokens_are_refused() {
        let now = Utc::now();
        let token = issue(&secret(), &claims(now));
        let other = Secret::new("another secret, also thirty-two bytes").unwrap();
        assert_eq!(verify(&other, &token, now), Err(TokenError::Signature));
        // The payload changed to another role: the signature no longer matches.
        let mut admin = claims(now);
        admin.role = Role::Admin;
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&admin).unwrap());
        let parts: Vec<&str> = token.split('.').collect();
        let altered = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
        assert_eq!(verify(&secret(), &altered, now), Err(TokenError::Signature));
        // `alg: none` with no signature, and another algorithm, whatever the signature.
        for alg in [r#"{"alg":"none","typ":"JWT"}"#, r#"{"alg":"HS512"}"#] {
            let header = URL_SAFE_NO_PAD.encode(alg);
            let token = format!("{header}.{}.{}", parts[1], parts[2]);
            assert_eq!(verify(&secret(), &token, now), Err(TokenError::Algorithm));
            let unsigned = format!("{header}.{}.", parts[1]);
            assert_eq!(
                verify(&secret(), &unsigned, now),
                Err(TokenError::Algorithm)
            );
        }
        for malformed in ["", "a.b", "a.b.c.d", "!!.??.**"] {
            assert_eq!(
                verify(&secret(), malformed, now),
                Err(TokenError::Malformed),
                "{malformed}"
            );
        }
        assert!(Secret::new("too short").is_err());
    }

    #[test]
    fn the_token_comes_from_the_bearer_header_or_the_cookie() {
        use axum::http::{HeaderMap, HeaderValue, header};
        let mut headers = HeaderMap::new();
        assert_eq!(token_of(&headers), None);
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; token=abc.def.ghi"),
        );
        assert_eq!(token_of(&headers), Some("abc.def.ghi"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer xyz.uvw.rst"),
        );
        assert_eq!(token_of(&headers), Some("xyz.uvw.rst"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dXNlcjpwYXNz"),
        );
        assert_eq!(token_of(&headers), None, "another scheme is no token");
    }
}

#[cfg(test)]
mod caller_tests {
    use axum::{Json, Router, http::StatusCode, routing::get};

    use super::*;
    use crate::testing::call;

    async fn who(caller: Caller) -> Json<serde_json::Value> {
        Json(match caller {
            Caller::Anonymous => serde_json::json!({"anonymous": true}),
            Caller::Known(claims) => serde_json::json!({"user": claims.user_id}),
        })
    }

    fn app(tokens: Option<Secret>) -> Router {
        Router::new()
            .route("/who", get(who))
            .layer(axum::Extension(Tokens(tokens)))
    }

    #[tokio::test]
    async fn a_request_is_anonymous_known_or_refused() {
        use axum::http::Method;
        let secret = Secret::new("a secret of at least thirty-two bytes!").unwrap();
        let user = Uuid::now_v7();
        let token_issued = |at: DateTime<Utc>| {
            let claims = Claims::new(
                user,
                "a@example.com",
                Role::Customer,
                at,
                chrono::Duration::hours(1),
            );
            issue(&secret, &claims)
        };
        let token = token_issued(Utc::now());
        let expired = token_issued(Utc::now() - chrono::Duration::hours(2));
        let ask = async |app: &Router, header: Option<(&str, &str)>| {
            let headers: Vec<(&str, &str)> = header.into_iter().collect();
            call(app, Method::GET, "/who", &headers, None).await
        };
        let app = app(Some(secret.clone()));
        assert_eq!(ask(&app, None).await.json["anonymous"], true);
        let bearer = format!("Bearer {token}");
        let cookie = format!("token={token}");
        for shown in [
            ("authorization", bearer.as_str()),
            ("cookie", cookie.as_str()),
        ] {
            assert_eq!(ask(&app, Some(shown)).await.json["user"], user.to_string());
        }
        for (header, value) in [
            ("authorization", format!("Bearer {expired}")),
            ("authorization", "Bearer not.a.token".to_owned()),
            ("cookie", format!("token={token}x")),
        ] {
            let refused = ask(&app, Some((header, &value))).await;
            assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{value}");
            assert_eq!(refused.json["code"], "invalid_token");
            assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
        }
        // Where no secret is configured, a token is refused rather than ignored.
        let refused = ask(&app_without_secret(), Some(("authorization", &bearer))).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn a_cookie_does_not_act_for_another_site() {
        use axum::http::Method;
        use axum::routing::post;
        let secret = Secret::new("a secret of at least thirty-two bytes!").unwrap();
        let claims = Claims::new(
            Uuid::now_v7(),
            "a@example.com",
            Role::Customer,
            Utc::now(),
            chrono::Duration::hours(1),
        );
        let token = issue(&secret, &claims);
        let cookie = format!("token={token}");
        let bearer = format!("Bearer {token}");
        let app = Router::new()
            .route("/who", get(who).merge(post(who)))
            .layer(axum::Extension(Tokens(Some(secret))));
        let ask = async |method: Method, headers: &[(&str, &str)]| {
            call(&app, method, "/who", headers, None).await
        };
        let host = ("host", "shop.example:3000");
        // Refused: a change sent with the cookie by a page of another site.
        for headers in [
            vec![
                ("cookie", cookie.as_str()),
                ("sec-fetch-site", "cross-site"),
            ],
            vec![
                ("cookie", cookie.as_str()),
                host,
                ("origin", "https://evil.example"),
            ],
            vec![("cookie", cookie.as_str()), host, ("origin", "null")],
        ] {
            let refused = ask(Method::POST, &headers).await;
            assert_eq!(refused.status, StatusCode::FORBIDDEN, "{headers:?}");
            assert_eq!(refused.json["code"], "cross_site_request");
        }
        // A page of an origin the installation lets call it: its own, even from another site.
        let allowed = app.clone().layer(axum::Extension(crate::http::Cors::new(&[
            "https://shop.example".into(),
        ])));
        let from_shop = call(
            &allowed,
            Method::POST,
            "/who",
            &[
                ("cookie", cookie.as_str()),
                ("sec-fetch-site", "cross-site"),
                ("origin", "https://shop.example"),
            ],
            None,
        )
        .await;
        assert_eq!(from_shop.status, StatusCode::OK);
        let from_elsewhere = call(
            &allowed,
            Method::POST,
            "/who",
            &[
                ("cookie", cookie.as_str()),
                ("sec-fetch-site", "cross-site"),
                ("origin", "https://evil.example"),
            ],
            None,
        )
        .await;
        assert_eq!(from_elsewhere.status, StatusCode::FORBIDDEN);
        // Let through: the site's own pages (another port of the same host is the same site),
        // a client that is no browser, a read, and the token in a header.
        for (method, headers) in [
            (
                Method::POST,
                vec![
                    ("cookie", cookie.as_str()),
                    ("sec-fetch-site", "same-origin"),
                ],
            ),
            (
                Method::POST,
                vec![("cookie", cookie.as_str()), ("sec-fetch-site", "same-site")],
            ),
            (
                Method::POST,
                vec![
                    ("cookie", cookie.as_str()),
                    host,
                    ("origin", "http://shop.example:5006"),
                ],
            ),
            (Method::POST, vec![("cookie", cookie.as_str())]),
            (
                Method::GET,
                vec![
                    ("cookie", cookie.as_str()),
                    ("sec-fetch-site", "cross-site"),
                ],
            ),
            (
                Method::POST,
                vec![
                    ("authorization", bearer.as_str()),
                    ("sec-fetch-site", "cross-site"),
                ],
            ),
        ] {
            let answer = ask(method.clone(), &headers).await;
            assert_eq!(answer.status, StatusCode::OK, "{method} {headers:?}");
            assert_eq!(answer.json["user"], claims.user_id.to_string());
        }
    }

    fn app_without_secret() -> Router {
        app(None)
    }

    #[test]
    fn customers_read_their_own_admins_and_services_everything() {
        let now = Utc::now();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let caller = |user, role| {
            Caller::Known(Claims::new(
                user,
                "x@example.com",
                role,
                now,
                chrono::Duration::hours(1),
            ))
        };
        assert!(caller(a, Role::Customer).may_read(a));
        assert!(!caller(a, Role::Customer).may_read(b));
        assert!(caller(a, Role::Admin).may_read(b));
        assert!(caller(a, Role::Service).may_read(b));
        assert!(!Caller::Anonymous.may_read(a));
        assert_eq!(
            Caller::Anonymous.known().unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
    }
}
