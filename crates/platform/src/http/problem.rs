//! Errors as clients see them: `application/problem+json` (RFC 9457) with a stable `code`, the
//! offending `param` when there is one, and the id of the request.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

use crate::db::DbError;

tokio::task_local! {
    /// The id of the request being handled, for error bodies.
    pub(crate) static REQUEST_ID: String;
    /// Set for the routes whose every error is [`ApiError::enveloped`].
    static ENVELOPED: bool;
}

/// Middleware for the routes of a seed whose clients read errors as `{success: false,
/// message}`: every problem they answer, whichever extractor or handler raised it, is
/// [`ApiError::enveloped`]. `router.layer(axum::middleware::from_fn(envelope_errors))`.
pub async fn envelope_errors(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    ENVELOPED.scope(true, next.run(req)).await
}

/// An error a client can see. Build it with the constructor that names its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// A stable machine-readable code, such as `invalid_amount`.
    pub code: &'static str,
    /// A sentence a person understands.
    pub detail: String,
    /// The request field, query parameter, path segment or header at fault.
    pub param: Option<String>,
    /// Seconds after which trying again should work (`Retry-After`).
    pub retry_after: Option<u32>,
    /// Also answered as a seed's clients read an error: `success: false` and `message`.
    pub enveloped: bool,
}

/// An error as `application/problem+json` (RFC 9457) writes it.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "type": "urn:kassa:problem:invalid_amount",
    "title": "Bad Request",
    "status": 400,
    "detail": "`total` has more decimal places than the currency allows (2).",
    "code": "invalid_amount",
    "param": "total",
    "requestId": "0190c5a4-7d1e-7cc3-8a57-3f4c8e5b2a10"
}))]
pub struct Problem<'a> {
    /// A URI: `urn:kassa:problem:` followed by `code`.
    #[serde(rename = "type")]
    kind: String,
    /// The HTTP status's reason phrase.
    title: &'a str,
    /// The HTTP status code.
    #[schema(minimum = 400, maximum = 599)]
    status: u16,
    /// A sentence a person understands.
    detail: &'a str,
    /// A stable machine-readable code, such as `invalid_amount`.
    code: &'a str,
    /// The body field, query or path parameter or header at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    param: Option<&'a str>,
    /// The id of the request (as in `X-Request-Id`), to quote when reporting the error.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    request_id: Option<String>,
    /// `false`, on the routes of a seed whose clients read `{success, message}` (seed 004).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    success: Option<bool>,
    /// The detail again, for those clients.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    message: Option<&'a str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            detail: detail.into(),
            param: None,
            retry_after: None,
            enveloped: false,
        }
    }

    /// A 400 about one input field.
    pub fn invalid(
        param: impl Into<String>,
        code: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code,
            detail: detail.into(),
            param: Some(param.into()),
            retry_after: None,
            enveloped: false,
        }
    }

    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, code, detail)
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, code, detail)
    }

    pub fn unprocessable(code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
    }

    /// A 503: the service cannot take the request now; try again in a second.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            detail,
        )
        .with_retry_after(1)
    }

    pub fn internal() -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Something went wrong on our side; the request was not applied.",
        )
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn with_retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The problem also carries `success: false` and `message` (the detail again), as the
    /// clients of a seed that answers `{success, data, message}` read an error (seed 004): one
    /// body both kinds of client understand.
    pub fn enveloped(mut self) -> Self {
        self.enveloped = true;
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl std::error::Error for ApiError {}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        if e.is_unavailable() {
            tracing::warn!(error = %e, "database unavailable");
            ApiError::unavailable("The database is unreachable; try again shortly.")
        } else {
            tracing::error!(error = %e, "database error");
            ApiError::internal()
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = REQUEST_ID.try_with(Clone::clone).ok();
        let enveloped = self.enveloped || ENVELOPED.try_with(|on| *on).unwrap_or(false);
        let problem = Problem {
            kind: format!("urn:kassa:problem:{}", self.code),
            title: self.status.canonical_reason().unwrap_or("Error"),
            status: self.status.as_u16(),
            detail: &self.detail,
            code: self.code,
            param: self.param.as_deref(),
            request_id,
            success: enveloped.then_some(false),
            message: enveloped.then_some(self.detail.as_str()),
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        // A 401 names the scheme that would be accepted (RFC 6750).
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        // A 503 always says when to try again.
        let retry_after = self
            .retry_after
            .or((self.status == StatusCode::SERVICE_UNAVAILABLE).then_some(1));
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(error: ApiError) -> serde_json::Value {
        let response = error.into_response();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn an_enveloped_problem_also_reads_as_a_seeds_error() {
        let plain = body(ApiError::conflict(
            "email_taken",
            "Email is already in use.",
        ))
        .await;
        assert_eq!(plain.get("success"), None);
        assert_eq!(plain.get("message"), None);
        let enveloped =
            body(ApiError::conflict("email_taken", "Email is already in use.").enveloped()).await;
        assert_eq!(enveloped["success"], false);
        assert_eq!(enveloped["message"], "Email is already in use.");
        assert_eq!(enveloped["detail"], "Email is already in use.");
        assert_eq!(enveloped["code"], "email_taken");
        assert_eq!(enveloped["status"], 409);
    }
}
