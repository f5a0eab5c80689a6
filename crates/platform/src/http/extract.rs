//! Request extractors that turn bad input into a problem naming the field at fault.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, RawPathParams, Request},
    http::{HeaderMap, StatusCode, header, request::Parts},
};
use serde::{Deserialize, Deserializer, de::DeserializeOwned};
use uuid::Uuid;

use super::problem::ApiError;

/// A JSON object body; malformed JSON, a wrong type, a missing or unknown field, the wrong
/// content type, a content encoding or an oversized body each get their own 4xx.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| {
                let v = v.trim().to_ascii_lowercase();
                v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "The body must be JSON, sent with Content-Type: application/json.",
            )
            .with_param("Content-Type"));
        }
        if !is_identity_encoded(req.headers()) {
            // Nothing here inflates bodies, so a gzip body would be read as (malformed) JSON;
            // and inflating untrusted bodies is a decompression-bomb risk we choose not to take.
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_content_encoding",
                "The body must be sent unencoded: no Content-Encoding, or Content-Encoding: identity.",
            )
            .with_param("Content-Encoding"));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "The request body is larger than this endpoint accepts.",
                )
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "unreadable_body",
                    rejection.body_text(),
                )
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// For an optional field that may be left out but not sent as `null`:
/// `#[serde(default, deserialize_with = "not_null")]` (serde reads `null` as `None` otherwise).
pub fn not_null<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// Whether every `Content-Encoding` the request declares is `identity`. Empty list elements are
/// ignored, as RFC 9110 (section 5.6.1) asks of recipients.
fn is_identity_encoded(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .all(|value| {
            value.to_str().is_ok_and(|value| {
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|coding| !coding.is_empty())
                    .all(|coding| coding.eq_ignore_ascii_case("identity"))
            })
        })
}

/// Deserialises a JSON object from `bytes`, saying which field is wrong when it fails.
///
/// The body must be exactly one object: serde would otherwise fill a struct from an array
/// (`["a", 1]`) and ignore whatever follows the value (`{...}xyz`), so clients could come to rely
/// on shapes the API never documented.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first.is_some_and(|b| *b != b'{') {
        // Valid JSON of the wrong kind and text that is not JSON at all get different answers.
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Ok(_) => ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "body_not_object",
                    "The body must be a JSON object, such as {\"field\": \"value\"}.",
                ),
                Err(e) => json_problem("", e),
            },
        );
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        json_problem(&path, e.into_inner())
    })?;
    de.end().map_err(|e| json_problem("", e))?;
    Ok(value)
}

/// The problem for a JSON error at `path` (serde_path_to_error's notation, `.` for the root).
pub(crate) fn json_problem(path: &str, inner: serde_json::Error) -> ApiError {
    let message = inner.to_string();
    let field = backticked(&message)
        .filter(|_| message.starts_with("unknown field") || message.starts_with("missing field"));
    let param = match (field, path) {
        (Some(f), "." | "") => f.to_owned(),
        (Some(f), p) if p == f || p.ends_with(&format!(".{f}")) => p.to_owned(),
        (Some(f), p) => format!("{p}.{f}"),
        (None, p) => p.trim_start_matches('.').to_owned(),
    };
    // A field type's own rule (`validate::Text`, `Email`, `Phone`) says its code first.
    let ruled = crate::validate::CODES.iter().find_map(|code| {
        message
            .strip_prefix(code)
            .and_then(|rest| rest.strip_prefix(": "))
            .map(|rest| (*code, rest))
    });
    let code = match inner.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "malformed_json",
        _ if ruled.is_some() => ruled.map(|(code, _)| code).unwrap_or("invalid_field"),
        _ if message.starts_with("unknown field") => "unknown_field",
        _ if message.starts_with("missing field") => "missing_field",
        _ => "invalid_field",
    };
    let sentence = strip_position(ruled.map(|(_, rest)| rest).unwrap_or(&message));
    let mut err = ApiError::new(
        StatusCode::BAD_REQUEST,
        code,
        match code {
            "malformed_json" => format!("The body is not valid JSON: {sentence}."),
            _ if param.is_empty() => {
                format!("The body is not what this endpoint accepts: {sentence}.")
            }
            _ => format!("Field `{param}`: {sentence}."),
        },
    );
    if !param.is_empty() && code != "malformed_json" {
        err = err.with_param(param);
    }
    err
}

fn backticked(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

fn strip_position(message: &str) -> &str {
    message
        .find(" at line ")
        .map(|i| &message[..i])
        .unwrap_or(message)
}

/// Parses a path or body value that must be a UUID, in its canonical hyphenated form (any letter
/// case) and not nil.
///
/// `uuid` also reads the braced, `urn:uuid:` and 32-digit forms; accepting them would give one
/// resource several URLs and spellings, so only the form the API itself writes is read back.
pub fn parse_uuid(param: &str, value: &str) -> Result<Uuid, ApiError> {
    let example = "476f5730-aa83-4ff0-ab9f-d6e19836e195";
    let canonical = value.len() == 36
        && value.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    let id = Uuid::parse_str(value)
        .ok()
        .filter(|_| canonical)
        .ok_or_else(|| {
            ApiError::invalid(
                param,
                "invalid_uuid",
                format!(
                    "`{param}` must be a UUID written as 36 characters, hex digits in groups of \
                 8-4-4-4-12 separated by hyphens, such as {example}."
                ),
            )
        })?;
    if id.is_nil() {
        // The nil UUID names nothing; it is what an unset id serialises to.
        return Err(ApiError::invalid(
            param,
            "invalid_uuid",
            format!("`{param}` must not be the nil UUID (all zeros); use an id such as {example}."),
        ));
    }
    Ok(id)
}

/// `?page=&limit=` with 1 ≤ page ≤ 1,000,000 (default 1) and 1 ≤ limit ≤ 100 (default 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pagination {
    pub page: u32,
    pub limit: u32,
}

pub const MAX_LIMIT: u32 = 100;
pub const MAX_PAGE: u32 = 1_000_000;

impl Pagination {
    pub fn offset(&self) -> i64 {
        (self.page as i64 - 1) * self.limit as i64
    }

    pub fn from_query(query: Option<&str>) -> Result<Self, ApiError> {
        let mut page = 1;
        let mut limit = 10;
        for (key, value) in form_pairs(query.unwrap_or("")) {
            match key.as_str() {
                "page" => page = parse_bounded("page", &value, 1, MAX_PAGE)?,
                "limit" => limit = parse_bounded("limit", &value, 1, MAX_LIMIT)?,
                _ => {}
            }
        }
        Ok(Pagination { page, limit })
    }
}

fn form_pairs(query: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query).unwrap_or_default()
}

/// Reads plain decimal digits only: no sign, no spaces, no fraction, as the document says.
fn parse_bounded(param: &str, value: &str, min: u32, max: u32) -> Result<u32, ApiError> {
    let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    match value.parse::<u64>() {
        Ok(n) if digits && n >= min as u64 && n <= max as u64 => Ok(n as u32),
        _ => Err(ApiError::invalid(
            param,
            "invalid_pagination",
            format!("`{param}` must be a whole number from {min} to {max}."),
        )),
    }
}

/// The one id in a request's path (`/api/orders/{id}`, `/api/payments/order/{orderId}`), read
/// as [`parse_uuid`] reads it: a bad one is a 400 naming the route's own parameter.
pub struct PathId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| {
                // Only a segment that is not UTF-8 once percent-decoded gets here.
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_uuid",
                    "The id in the path must be a UUID; this one is not even UTF-8 text.",
                )
            })?;
        let mut params = params.iter();
        match (params.next(), params.next()) {
            (Some((name, value)), None) => parse_uuid(name, value).map(PathId),
            // A route with no or several parameters is the handler's mistake, not the caller's.
            _ => {
                tracing::error!(
                    path = parts.uri.path(),
                    "PathId used on a route without exactly one parameter"
                );
                Err(ApiError::internal())
            }
        }
    }
}

/// A record read by id as its view, or the problem `missing` makes when there is none.
pub fn found<T, V: From<T>>(
    record: Option<T>,
    missing: impl FnOnce() -> ApiError,
) -> Result<axum::Json<V>, ApiError> {
    record.map(|r| axum::Json(V::from(r))).ok_or_else(missing)
}

impl<S: Send + Sync> FromRequestParts<S> for Pagination {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Pagination::from_query(parts.uri.query())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Body {
        user_id: String,
        total: u32,
    }

    #[test]
    fn json_errors_name_the_field() {
        let e = parse_json::<Body>(br#"{"userId": "a", "total": "x"}"#).unwrap_err();
        assert_eq!(
            (e.code, e.param.as_deref()),
            ("invalid_field", Some("total"))
        );
        let e = parse_json::<Body>(br#"{"userId": "a"}"#).unwrap_err();
        assert_eq!(
            (e.code, e.param.as_deref()),
            ("missing_field", Some("total"))
        );
        let e = parse_json::<Body>(br#"{"userId": "a", "total": 1, "hack": true}"#).unwrap_err();
        assert_eq!(
            (e.code, e.param.as_deref()),
            ("unknown_field", Some("hack"))
        );
        let e = parse_json::<Body>(br#"{"userId": "#).unwrap_err();
        assert_eq!(e.code, "malformed_json");
    }

    #[test]
    fn json_bodies_end_where_their_value_ends() {
        let e = parse_json::<Body>(br#"{"userId": "a", "total": 1}xyz"#).unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::BAD_REQUEST, "malformed_json")
        );
        let e = parse_json::<Body>(br#"{"userId": "a", "total": 1} {}"#).unwrap_err();
        assert_eq!(e.code, "malformed_json");
        let ok = parse_json::<Body>(b" \r\n\t{\"userId\": \"a\", \"total\": 1} \r\n\t");
        assert_eq!(ok.map(|b| b.total).ok(), Some(1));
    }

    #[test]
    fn json_bodies_are_objects() {
        // serde fills a struct from a sequence too; the API documents objects only.
        for body in [
            &br#"["a", 1]"#[..],
            br#" ["a", 1] "#,
            br#""a""#,
            b"1",
            b"null",
            b"true",
        ] {
            let e = parse_json::<Body>(body).unwrap_err();
            assert_eq!(
                (e.status, e.code),
                (StatusCode::BAD_REQUEST, "body_not_object"),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        for body in [&b""[..], b"   ", b"[1,", b"xyz", br#"["a", 1]xyz"#] {
            let e = parse_json::<Body>(body).unwrap_err();
            assert_eq!(
                (e.status, e.code),
                (StatusCode::BAD_REQUEST, "malformed_json"),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    fn json_request(encoding: Option<&str>, body: &'static str) -> Request {
        let mut req = Request::builder()
            .method("POST")
            .uri("/")
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(encoding) = encoding {
            req = req.header(header::CONTENT_ENCODING, encoding);
        }
        req.body(axum::body::Body::from(body)).unwrap()
    }

    #[tokio::test]
    async fn encoded_bodies_are_refused() {
        let body = r#"{"userId": "a", "total": 1}"#;
        for encoding in ["gzip", "br", "deflate", "identity, gzip", "x-unknown"] {
            let req = json_request(Some(encoding), body);
            let e = ApiJson::<Body>::from_request(req, &())
                .await
                .err()
                .unwrap_or_else(|| panic!("{encoding} accepted"));
            assert_eq!(
                (e.status, e.code, e.param.as_deref()),
                (
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_content_encoding",
                    Some("Content-Encoding")
                ),
                "{encoding}"
            );
        }
        for encoding in [None, Some("identity"), Some("IDENTITY"), Some(" identity ")] {
            let req = json_request(encoding, body);
            let parsed = ApiJson::<Body>::from_request(req, &()).await;
            assert_eq!(parsed.ok().map(|b| b.0.total), Some(1), "{encoding:?}");
        }
    }

    #[test]
    fn uuids_are_canonical_and_not_nil() {
        let id = "476f5730-aa83-4ff0-ab9f-d6e19836e195";
        assert_eq!(
            parse_uuid("id", id).map(|u| u.to_string()).ok().as_deref(),
            Some(id)
        );
        let upper = id.to_ascii_uppercase();
        assert_eq!(
            parse_uuid("id", &upper)
                .map(|u| u.to_string())
                .ok()
                .as_deref(),
            Some(id)
        );
        for bad in [
            "00000000-0000-0000-0000-000000000000",
            "{476f5730-aa83-4ff0-ab9f-d6e19836e195}",
            "urn:uuid:476f5730-aa83-4ff0-ab9f-d6e19836e195",
            "476f5730aa834ff0ab9fd6e19836e195",
            "476f5730-aa83-4ff0-ab9f-d6e19836e19",
            "476f5730-aa83-4ff0-ab9f-d6e19836e1955",
            "476f5730-aa834-ff0-ab9f-d6e19836e195",
            "476f5730+aa83+4ff0+ab9f+d6e19836e195",
            "g76f5730-aa83-4ff0-ab9f-d6e19836e195",
            " 476f5730-aa83-4ff0-ab9f-d6e19836e195",
            "",
        ] {
            let e = parse_uuid("id", bad).unwrap_err();
            assert_eq!(
                (e.status, e.code, e.param.as_deref()),
                (StatusCode::BAD_REQUEST, "invalid_uuid", Some("id")),
                "{bad}"
            );
        }
        let nil = parse_uuid("id", "00000000-0000-0000-0000-000000000000").unwrap_err();
        assert!(nil.detail.contains("nil"), "{}", nil.detail);
        let braced = parse_uuid("id", "{476f5730-aa83-4ff0-ab9f-d6e19836e195}").unwrap_err();
        assert!(braced.detail.contains("36"), "{}", braced.detail);
    }

    #[test]
    fn pagination_is_bounded() {
        assert_eq!(
            Pagination::from_query(None).unwrap(),
            Pagination { page: 1, limit: 10 }
        );
        assert_eq!(
            Pagination::from_query(Some("page=3&limit=100")).unwrap(),
            Pagination {
                page: 3,
                limit: 100
            }
        );
        assert_eq!(
            Pagination::from_query(Some("page=0"))
                .unwrap_err()
                .param
                .as_deref(),
            Some("page")
        );
        assert_eq!(
            Pagination::from_query(Some("limit=10000"))
                .unwrap_err()
                .param
                .as_deref(),
            Some("limit")
        );
        assert_eq!(
            Pagination::from_query(Some("limit=abc")).unwrap_err().code,
            "invalid_pagination"
        );
        for query in [
            "page=%2B2",
            "page=%202",
            "page=2%20",
            "page=",
            "limit=1.0",
            "limit=-1",
        ] {
            assert_eq!(
                Pagination::from_query(Some(query)).unwrap_err().code,
                "invalid_pagination",
                "{query}"
            );
        }
        assert_eq!(
            Pagination::from_query(Some("page=007"))
                .map(|p| p.page)
                .ok(),
            Some(7)
        );
        assert_eq!(
            Pagination::from_query(Some("page=2&limit=5"))
                .unwrap()
                .offset(),
            5
        );
    }
}

/// `meta` of a paginated list, as seed 003 shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PageMeta {
    pub page: u32,
    pub limit: u32,
    pub total: i64,
    pub total_pages: i64,
}

/// A page of a list: `{data, meta}`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub meta: PageMeta,
}

impl<T> Page<T> {
    pub fn new(data: Vec<T>, pagination: Pagination, total: i64) -> Self {
        let limit = pagination.limit.max(1) as i64;
        Page {
            data,
            meta: PageMeta {
                page: pagination.page,
                limit: pagination.limit,
                total,
                total_pages: (total + limit - 1) / limit,
            },
        }
    }

    /// The same page with each item turned into what the API shows.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            data: self.data.into_iter().map(f).collect(),
            meta: self.meta,
        }
    }
}
