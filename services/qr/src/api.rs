//! The qr service's routes: the seed's `POST /api/QrCode/generate` and
//! `POST /api/QrCode/validate`, the registration of dispensers, and a code as an image.
//!
//! A dispenser signs each validation: `signature` is the lower-case hex HMAC-SHA256, under the
//! secret it was given when registered, of `{code}:{deviceId}:{timestamp}` (`timestamp` in
//! seconds since 1970, within five minutes of the server's clock). A code copied off a screen
//! is no use without a registered dispenser's secret, and a captured request is no use after
//! its code was redeemed.

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use kassa_platform::{
    access::{Policy, Rule},
    auth::Access,
    auth::Role,
    db::{Db, sql},
    http::{
        ApiError, ApiJson, ApiResult, PathId, RequestIds,
        openapi::{self, InvalidBody, InvalidParams, ProblemResponses, SignedIn, TokenSecurity},
        parse_uuid,
    },
    signing,
    validate::{Text, Whole},
};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::codes::{self, Code, Refusal};

/// How far a dispenser's clock may be from the server's.
pub const CLOCK_SKEW_SECS: u64 = 300;

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
}

/// What a kiosk asks codes for.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Generate {
    #[schema(value_type = openapi::Id)]
    pub order_id: String,
}

/// The codes of an order.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Codes {
    pub order_id: Uuid,
    /// One for each unit still to hand out, good until its `expiresAt`.
    pub codes: Vec<Code>,
}

/// Codes for a paid order's units still to hand out: new ones for units whose code expired.
#[utoipa::path(post, path = "/api/QrCode/generate", tag = "QR codes", request_body = Generate,
    security((), ("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, body = Codes, description = "A code for each unit still to hand out (none once all are)."),
        (status = 404, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "No paid order with items to hand out is known here (yet) (`order_not_found`)."),
        (status = 409, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "The order was cancelled (`order_cancelled`)."),
        (status = 403, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "A customer's token: the kiosk, an admin or a service makes codes (`admin_only`)."),
        SignedIn,
        InvalidBody,
    ))]
pub async fn generate(
    State(state): State<AppState>,
    access: Access,
    ApiJson(body): ApiJson<Generate>,
) -> ApiResult<Json<Codes>> {
    access.sees_everything()?;
    let order_id = parse_uuid("orderId", &body.order_id)?;
    let mut tx = state.db.begin().await?;
    if !codes::known(&mut tx, order_id).await? {
        return Err(ApiError::not_found(
            "order_not_found",
            "No paid order with items to hand out has this id here (yet).",
        ));
    }
    if codes::of_order(&mut tx, order_id)
        .await?
        .iter()
        .any(|c| c.revoked)
    {
        return Err(ApiError::conflict(
            "order_cancelled",
            "The order was cancelled: its items are not handed out.",
        ));
    }
    let codes = codes::issue(&mut tx, order_id, kassa_contracts::now()).await?;
    tx.commit().await?;
    Ok(Json(Codes { order_id, codes }))
}

/// A dispenser's request to hand out the unit a code stands for.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Validate {
    /// The code read from the customer's QR.
    #[schema(value_type = openapi::Id)]
    pub code: String,
    #[schema(value_type = openapi::Id)]
    pub device_id: String,
    /// Seconds since 1970 when the dispenser signed the request.
    pub timestamp: Whole<0, 253_402_300_799>,
    /// Hex HMAC-SHA256 of `{code}:{deviceId}:{timestamp}` under the dispenser's secret.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub signature: String,
}

/// Hand out this unit.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Dispense {
    /// Always `true`: the dispenser hands the unit out.
    pub valid: bool,
    pub order_id: Uuid,
    pub product_id: Uuid,
    pub unit: i64,
}

fn refused(status: StatusCode, code: &'static str, detail: &str) -> ApiError {
    ApiError::new(status, code, detail.to_owned())
}

/// Redeem a code at a dispenser: once, by a registered dispenser only.
#[utoipa::path(post, path = "/api/QrCode/validate", tag = "QR codes", request_body = Validate,
    responses(
        (status = 200, body = Dispense, description = "Hand the unit out: the code is used up (and when it was the order's last, the order completes)."),
        (status = 403, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "Not a registered dispenser (`unknown_device`), a signature that does not hold (`bad_signature`), or a timestamp more than five minutes off (`stale_request`)."),
        (status = 404, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "No such code (`unknown_code`)."),
        (status = 409, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "Already used (`code_used`), or its order was cancelled (`code_revoked`)."),
        (status = 410, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "Expired (`code_expired`): the kiosk generates a new one."),
        InvalidBody,
    ))]
pub async fn validate(
    State(state): State<AppState>,
    ids: RequestIds,
    ApiJson(body): ApiJson<Validate>,
) -> ApiResult<Json<Dispense>> {
    let code = parse_uuid("code", &body.code)?;
    let device = parse_uuid("deviceId", &body.device_id)?;
    let secret: Option<String> = sql("SELECT secret FROM devices WHERE id = $1")
        .bind(device)
        .fetch_optional(&state.db)
        .await?
        .map(|r| r.get("secret"))
        .transpose()?;
    let Some(secret) = secret else {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "unknown_device",
            "No dispenser is registered with this id.",
        ));
    };
    let now = kassa_contracts::now();
    let signed_at = body.timestamp.get();
    if now.timestamp().abs_diff(signed_at) > CLOCK_SKEW_SECS {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "stale_request",
            "The request's timestamp is more than five minutes from the server's clock.",
        ));
    }
    let message = format!("{}:{}:{signed_at}", body.code, body.device_id);
    if !signing::verify_hex(secret.as_bytes(), &[message.as_bytes()], &body.signature) {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "bad_signature",
            "The signature does not hold for this code, dispenser and time.",
        ));
    }
    match codes::redeem(&state.db, code, device, now, &ids.event_context()).await? {
        Ok(found) => {
            tracing::info!(code = %found.id, order_id = %found.order_id, device = %device, "unit handed out");
            Ok(Json(Dispense {
                valid: true,
                order_id: found.order_id,
                product_id: found.product_id,
                unit: found.unit,
            }))
        }
        Err(Refusal::Unknown) => Err(refused(
            StatusCode::NOT_FOUND,
            "unknown_code",
            "No such code.",
        )),
        Err(Refusal::Used) => Err(refused(
            StatusCode::CONFLICT,
            "code_used",
            "This code was already used.",
        )),
        Err(Refusal::Revoked) => Err(refused(
            StatusCode::CONFLICT,
            "code_revoked",
            "The code's order was cancelled.",
        )),
        Err(Refusal::Expired) => Err(refused(
            StatusCode::GONE,
            "code_expired",
            "The code expired; the kiosk generates a new one.",
        )),
    }
}

/// A dispenser to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewDevice {
    pub name: Text<100>,
}

/// A registered dispenser and its secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Registered {
    pub device_id: Uuid,
    pub name: String,
    /// The HMAC key it signs its requests with; not shown again.
    pub secret: String,
}

/// Register a dispenser.
#[utoipa::path(post, path = "/api/QrCode/devices", tag = "QR codes", request_body = NewDevice,
    security((), ("bearer" = []), ("cookie" = [])),
    responses(
        (status = 201, body = Registered, description = "Registered: give the dispenser its id and secret."),
        (status = 403, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "A customer's token (`admin_only`)."),
        SignedIn,
        InvalidBody,
    ))]
pub async fn register(
    State(state): State<AppState>,
    access: Access,
    ApiJson(body): ApiJson<NewDevice>,
) -> ApiResult<(StatusCode, Json<Registered>)> {
    access.sees_everything()?;
    let device = Registered {
        device_id: Uuid::now_v7(),
        name: body.name.to_string(),
        secret: kassa_platform::auth::Secret::generate(),
    };
    sql("INSERT INTO devices (id, name, secret, created_at) VALUES ($1, $2, $3, $4)")
        .bind(device.device_id)
        .bind(&device.name)
        .bind(&device.secret)
        .bind(kassa_contracts::now())
        .execute(&state.db)
        .await?;
    Ok((StatusCode::CREATED, Json(device)))
}

/// A code as an SVG image, for the kiosk's screen.
#[utoipa::path(get, path = "/api/QrCode/{id}/qr.svg", tag = "QR codes",
    params(("id" = inline(openapi::Id), Path, description = "The code.")),
    security((), ("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, content_type = "image/svg+xml", body = String, description = "The code's QR image."),
        (status = 404, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "No such code (`unknown_code`)."),
        (status = 403, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "A customer's token: the kiosk, an admin or a service shows codes (`admin_only`)."),
        SignedIn,
        InvalidParams,
    ))]
pub async fn image(
    State(state): State<AppState>,
    access: Access,
    PathId(id): PathId,
) -> ApiResult<Response> {
    access.sees_everything()?;
    let exists = sql("SELECT 1 AS one FROM codes WHERE id = $1")
        .bind(id)
        .fetch_optional(&state.db)
        .await?;
    if exists.is_none() {
        return Err(refused(
            StatusCode::NOT_FOUND,
            "unknown_code",
            "No such code.",
        ));
    }
    let svg = kassa_platform::qr::svg(&id.to_string()).map_err(|_| ApiError::internal())?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

/// A kiosk and the staff make an order's pickup codes and show them; a dispenser's request is
/// proved by its signature (so it needs no credential of its own); only an admin registers a
/// dispenser, whose secret the answer holds.
pub const RULES: &[Rule] = &[
    Rule::post("/api/QrCode/generate", KIOSK),
    Rule::post("/api/QrCode/validate", Policy::PUBLIC),
    Rule::post("/api/QrCode/devices", Policy::ADMIN),
    Rule::get("/api/QrCode/{id}/qr.svg", KIOSK),
];

const KIOSK: Policy = Policy::STAFF.and(&[Role::Kiosk]);

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/QrCode/generate", post(generate))
        .route("/api/QrCode/validate", post(validate))
        .route("/api/QrCode/devices", post(register))
        .route("/api/QrCode/{id}/qr.svg", get(image))
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    paths(generate, validate, register, image),
    components(schemas(Generate, Codes, Code, Validate, Dispense, NewDevice, Registered, openapi::Id)),
    modifiers(&ProblemResponses, &TokenSecurity)
)]
pub struct ApiDoc;
