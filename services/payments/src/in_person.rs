//! Payments made in person (seed 002's kiosk): an order placed for `Cash` or `QRIS` gets a
//! PENDING payment that the provider never sees; the kiosk shows it (with the QRIS code to
//! scan) and confirms it once the money is in, which approves it exactly once: the order
//! becomes PAID, and the seed's `PaymentCompleted` is published beside `payment.approved`.
//!
//! The seed's routes: `GET /api/all`, `POST /api/Payment`, `POST /api/Payment/{PaymentId}/confirm`
//! and `GET /api/Payment/order/{OrderId}`; the QRIS code as images under
//! `/api/Payment/{PaymentId}/qris.svg` and `.png`.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{RawQuery, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use kassa_contracts::{
    Envelope,
    events::{PaymentApproved, PaymentCompleted, PaymentOutcome},
};
use kassa_platform::{
    access::{Policy, Rule},
    auth::Access,
    auth::Role,
    cache::Cache,
    db::Db,
    http::{
        ApiError, ApiJson, ApiResult, Pagination, PathId, RequestIds,
        openapi::{
            self, IdempotencyKeyHeader, InvalidBody, InvalidParams, ProblemResponses, SignedIn,
            TokenSecurity,
        },
        parse_uuid,
    },
    idempotency::{self, Begun, IdempotencyKey},
    listing::plain_page,
    outbox,
};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::{
    NAME,
    api::PaymentView,
    domain::{InPerson, Payment, PaymentStatus},
    qris::{self, Merchant},
    store,
};

#[derive(Clone)]
pub struct InPersonState {
    pub db: Db,
    pub cache: Arc<dyn Cache>,
    pub merchant: Merchant,
}

/// The QRIS code of a pending payment.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QrisCode {
    /// The EMVCo merchant-presented payload the customer's app scans (dynamic: it carries the
    /// amount; CRC-16/CCITT in its last four characters).
    pub payload: String,
    /// The same as an SVG image.
    pub svg_url: String,
    /// The same as a PNG image.
    pub png_url: String,
}

/// An in-person payment as the kiosk reads it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InPersonView {
    #[serde(flatten)]
    payment: PaymentView,
    /// While a QRIS payment is PENDING: what to show the customer.
    #[serde(skip_serializing_if = "Option::is_none")]
    qris: Option<QrisCode>,
}

impl InPersonState {
    fn view(&self, payment: &Payment) -> ApiResult<InPersonView> {
        let qris = match (payment.method, payment.status) {
            (Some(InPerson::Qris), PaymentStatus::Pending) => {
                let payload =
                    qris::payload(&self.merchant, payment.amount, &payment.id.to_string())
                        .ok_or_else(|| {
                            ApiError::unprocessable(
                                "currency_not_in_qris",
                                format!(
                                    "QRIS codes are not made for {} here.",
                                    payment.amount.currency().code()
                                ),
                            )
                        })?;
                Some(QrisCode {
                    payload,
                    svg_url: format!("/api/Payment/{}/qris.svg", payment.id),
                    png_url: format!("/api/Payment/{}/qris.png", payment.id),
                })
            }
            _ => None,
        };
        Ok(InPersonView {
            payment: PaymentView::from(payment),
            qris,
        })
    }
}

/// What the kiosk asks for: how the order is paid.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateInPerson {
    #[schema(value_type = openapi::Id)]
    pub order_id: String,
    /// `Cash` or `QRIS`, in any letter case.
    #[schema(schema_with = InPerson::schema)]
    pub method: String,
}

fn order_unknown() -> ApiError {
    ApiError::not_found(
        "payment_not_found",
        "No order with this id is waiting for an in-person payment here (yet): place it with \
         `paymentMethod` Cash or QRIS, and retry shortly if it was just placed.",
    )
}

fn not_in_person() -> ApiError {
    ApiError::conflict(
        "not_in_person",
        "This order is paid through the payment provider, not in person.",
    )
}

/// Choose how an order placed for in-person payment is paid (Cash at the counter, or QRIS by
/// scanning), and read what to show the customer.
#[utoipa::path(post, path = "/api/Payment", tag = "In-person payments", request_body = CreateInPerson,
    security((), ("bearer" = []), ("cookie" = [])),
    responses(
        SignedIn,
        (status = 200, body = InPersonView, description = "The order's payment, with its method as asked while it is PENDING (and then the QRIS code to show); as it stands once it is settled."),
        (status = 404, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "No order placed for in-person payment has this id here (yet) (`payment_not_found`)."),
        (status = 409, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "The order is paid through the provider (`not_in_person`)."),
        (status = 422, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "`method` is not Cash or QRIS (`invalid_method`), or QRIS codes are not made for the order's currency (`currency_not_in_qris`)."),
        InvalidBody,
    ))]
pub async fn choose(
    State(state): State<InPersonState>,
    access: Access,
    ApiJson(body): ApiJson<CreateInPerson>,
) -> ApiResult<Json<InPersonView>> {
    access.sees()?;
    let order_id = parse_uuid("orderId", &body.order_id)?;
    let method = InPerson::parse(body.method.trim()).ok_or_else(|| {
        ApiError::unprocessable(
            "invalid_method",
            format!("`method` is one of {}.", InPerson::expected()),
        )
        .with_param("method")
    })?;
    let mut tx = state.db.begin().await?;
    let payment = match store::find_by_order_for_update(&state.db, &mut tx, order_id).await? {
        Some(payment) if access.may_see(payment.user_id)? => payment,
        _ => return Err(order_unknown()),
    };
    let Some(current) = payment.method else {
        return Err(not_in_person());
    };
    let payment = if payment.status == PaymentStatus::Pending && current != method {
        let changed = store::set_method(&mut tx, &payment, method).await?;
        tx.commit().await?;
        crate::api::cache_payments_beside(state.cache.clone(), vec![changed.clone()]);
        changed
    } else {
        tx.rollback().await?;
        payment
    };
    Ok(Json(state.view(&payment)?))
}

fn payment_not_found() -> ApiError {
    ApiError::not_found("payment_not_found", "No payment has this id.")
}

/// Confirm that the customer paid: approves the payment once (the order becomes PAID); a repeat
/// answers the same.
#[utoipa::path(post, path = "/api/Payment/{PaymentId}/confirm", tag = "In-person payments",
    params(("PaymentId" = inline(openapi::Id), Path, description = "The payment's id."), IdempotencyKeyHeader),
    security((), ("bearer" = []), ("cookie" = [])),
    responses(
        SignedIn,
        (status = 403, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "A customer's token: the kiosk or an admin confirms what was paid (`admin_only`)."),
        (status = 200, body = InPersonView, description = "APPROVED; `payment.approved` and `payment.completed` were published when it was confirmed (once)."),
        (status = 404, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "No payment has this id (`payment_not_found`)."),
        (status = 409, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "It is paid through the provider (`not_in_person`); its order was cancelled or its stock hold expired (`payment_cancelled`); or a request with this Idempotency-Key is still being processed (`idempotency_key_in_use`)."),
        (status = 422, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "This Idempotency-Key was used before with a different request (`idempotency_key_reused`)."),
        InvalidParams,
    ))]
pub async fn confirm(
    State(state): State<InPersonState>,
    access: Access,
    PathId(id): PathId,
    ids: RequestIds,
    headers: HeaderMap,
) -> ApiResult<Response> {
    access.sees_everything()?;
    let key = IdempotencyKey::from_headers(&headers)?;
    let scope = format!("payments.confirm:{id}");
    let fingerprint = || Ok(idempotency::fingerprint(&[id.as_bytes()]));
    let mut write = match idempotency::begin(&state.db, &scope, key, fingerprint).await? {
        Begun::Replay(answer) => return Ok(answer),
        Begun::Fresh(write) => write,
    };
    let tx = write.tx();
    let payment = store::find_for_update(&state.db, tx, id)
        .await?
        .ok_or_else(payment_not_found)?;
    let Some(method) = payment.method else {
        return Err(not_in_person());
    };
    let payment = match payment.status {
        PaymentStatus::Pending => {
            let reference = format!("{}-{}", method.as_str().to_ascii_lowercase(), payment.id);
            let approved = store::transition(
                tx,
                &payment,
                PaymentStatus::Approved,
                None,
                Some(&reference),
            )
            .await?
            .ok_or_else(ApiError::internal)?;
            let ctx = ids.event_context();
            let outcome = PaymentOutcome {
                payment_id: approved.id,
                order_id: approved.order_id,
                amount_minor: approved.amount.minor(),
                currency: approved.amount.currency().code().to_owned(),
                reason: None,
                reference: Some(reference),
            };
            let completed = PaymentCompleted {
                payment_id: approved.id,
                order_id: approved.order_id,
                amount_minor: approved.amount.minor(),
                currency: approved.amount.currency().code().to_owned(),
                method: method.as_str().to_owned(),
                timestamp: approved
                    .updated_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            };
            outbox::add(
                tx,
                &Envelope::new(NAME, approved.id, &PaymentApproved(outcome), &ctx),
            )
            .await?;
            outbox::add(tx, &Envelope::new(NAME, approved.id, &completed, &ctx)).await?;
            tracing::info!(payment_id = %approved.id, order_id = %approved.order_id, method = method.as_str(), "in-person payment confirmed");
            approved
        }
        // Confirmed before: the same answer.
        PaymentStatus::Approved => payment,
        PaymentStatus::Cancelled | PaymentStatus::Refunded => {
            return Err(ApiError::conflict(
                "payment_cancelled",
                "The order was cancelled (or its stock hold expired): this payment cannot be confirmed.",
            ));
        }
        PaymentStatus::Processing | PaymentStatus::Declined | PaymentStatus::Failed => {
            return Err(not_in_person());
        }
    };
    let body = serde_json::to_vec(&state.view(&payment)?).map_err(|_| ApiError::internal())?;
    let response = write.finish(StatusCode::OK, body).await?;
    crate::api::cache_payments_beside(state.cache.clone(), vec![payment]);
    Ok(response)
}

/// The payment of an order, in person or not.
#[utoipa::path(get, path = "/api/Payment/order/{OrderId}", tag = "In-person payments",
    params(("OrderId" = inline(openapi::Id), Path, description = "The order's id.")),
    security((), ("bearer" = []), ("cookie" = [])),
    responses(
        SignedIn,
        (status = 200, body = InPersonView, description = "The order's payment (with the QRIS code while a QRIS payment is PENDING)."),
        (status = 404, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "This order has no payment (yet) (`payment_not_found`)."),
        (status = 422, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "QRIS codes are not made for the order's currency (`currency_not_in_qris`)."),
        InvalidParams,
    ))]
pub async fn by_order(
    State(state): State<InPersonState>,
    access: Access,
    PathId(order_id): PathId,
) -> ApiResult<Json<InPersonView>> {
    access.sees()?;
    let payment = match store::find_by_order(&state.db, order_id).await? {
        Some(payment) if access.may_see(payment.user_id)? => payment,
        _ => {
            return Err(ApiError::not_found(
                "payment_not_found",
                "This order has no payment (yet).",
            ));
        }
    };
    Ok(Json(state.view(&payment)?))
}

/// Every payment of an order, newest first, as the seed's clients read lists.
#[utoipa::path(get, path = "/api/all", tag = "In-person payments", params(Pagination),
    security((), ("bearer" = []), ("cookie" = [])),
    responses(
        SignedIn,
        (status = 200, body = [PaymentView], description = "One page of payments as a plain array (100 unless `limit` says fewer); `X-Total-Count` tells how many in all, `Link` names the next page.",
            headers(("X-Total-Count" = i64, description = "How many payments there are."), ("Link" = String, description = "`<…>; rel=\"next\"` when a next page exists."))),
        InvalidParams,
    ))]
pub async fn all(
    State(state): State<InPersonState>,
    access: Access,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let owner = access.sees()?;
    let (pagination, pairs) = kassa_platform::listing::list_query(query.as_deref(), &[], true)?;
    let page = store::page(&state.db, pagination, owner)
        .await?
        .map(PaymentView::from);
    plain_page(&page, "/api/all", pairs)
}

async fn pending_qris(state: &InPersonState, access: &Access, id: Uuid) -> ApiResult<String> {
    access.sees()?;
    let payment = match store::find(&state.db, id).await? {
        Some(payment) if access.may_see(payment.user_id)? => payment,
        _ => return Err(payment_not_found()),
    };
    state
        .view(&payment)?
        .qris
        .map(|q| q.payload)
        .ok_or_else(|| {
            ApiError::not_found(
                "no_qris_code",
                "This payment has no QRIS code to show: it is not a PENDING QRIS payment.",
            )
        })
}

fn image_error(_: kassa_platform::qr::TooLong) -> ApiError {
    ApiError::internal()
}

/// A pending QRIS payment's code as an SVG image.
#[utoipa::path(get, path = "/api/Payment/{PaymentId}/qris.svg", tag = "In-person payments",
    params(("PaymentId" = inline(openapi::Id), Path, description = "The payment's id.")),
    security((), ("bearer" = []), ("cookie" = [])),
    responses(
        SignedIn,
        (status = 200, content_type = "image/svg+xml", body = String, description = "The QRIS code."),
        (status = 404, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "No payment has this id (`payment_not_found`), or it is not a PENDING QRIS payment (`no_qris_code`)."),
        (status = 422, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "QRIS codes are not made for the payment's currency (`currency_not_in_qris`)."),
        InvalidParams,
    ))]
pub async fn qris_svg(
    State(state): State<InPersonState>,
    access: Access,
    PathId(id): PathId,
) -> ApiResult<Response> {
    let payload = pending_qris(&state, &access, id).await?;
    let svg = kassa_platform::qr::svg(&payload).map_err(image_error)?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

/// A pending QRIS payment's code as a PNG image.
#[utoipa::path(get, path = "/api/Payment/{PaymentId}/qris.png", tag = "In-person payments",
    params(("PaymentId" = inline(openapi::Id), Path, description = "The payment's id.")),
    security((), ("bearer" = []), ("cookie" = [])),
    responses(
        SignedIn,
        (status = 200, content_type = "image/png", body = Vec<u8>, description = "The QRIS code, 8 pixels a module."),
        (status = 404, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "No payment has this id (`payment_not_found`), or it is not a PENDING QRIS payment (`no_qris_code`)."),
        (status = 422, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "QRIS codes are not made for the payment's currency (`currency_not_in_qris`)."),
        InvalidParams,
    ))]
pub async fn qris_png(
    State(state): State<InPersonState>,
    access: Access,
    PathId(id): PathId,
) -> ApiResult<Response> {
    let payload = pending_qris(&state, &access, id).await?;
    let png = kassa_platform::qr::png(&payload, 8).map_err(image_error)?;
    Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
}

/// Seed 002's in-person payments: a kiosk (or the customer, for their own order) chooses Cash
/// or QRIS and shows the code; the staff and a kiosk confirm what was paid in person.
pub const RULES: &[Rule] = &[
    Rule::get("/api/all", Policy::STAFF).opens_with("seed002"),
    Rule::post("/api/Payment", KIOSK).opens_with("seed002"),
    Rule::post(
        "/api/Payment/{id}/confirm",
        Policy::STAFF.and(&[Role::Kiosk]),
    ),
    Rule::get("/api/Payment/order/{id}", KIOSK.and(&[Role::Service])).opens_with("seed002"),
    Rule::get("/api/Payment/{id}/qris.svg", KIOSK),
    Rule::get("/api/Payment/{id}/qris.png", KIOSK),
];

const KIOSK: Policy = Policy::CUSTOMER.and(&[Role::Kiosk]);

pub fn router(state: InPersonState) -> Router {
    Router::new()
        .route("/api/all", get(all))
        .route("/api/Payment", post(choose))
        .route("/api/Payment/{id}/confirm", post(confirm))
        .route("/api/Payment/order/{id}", get(by_order))
        .route("/api/Payment/{id}/qris.svg", get(qris_svg))
        .route("/api/Payment/{id}/qris.png", get(qris_png))
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    paths(all, choose, confirm, by_order, qris_svg, qris_png),
    components(schemas(CreateInPerson, InPersonView, QrisCode, openapi::Id)),
    modifiers(&ProblemResponses, &TokenSecurity)
)]
pub struct InPersonApi;
