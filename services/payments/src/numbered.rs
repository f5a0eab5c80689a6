//! Seed 001's payment API: the payments of orders by number, with an integer status, served where
//! its payment service serves them (`/api/Payment/…`) and where its gateway does (`/payments/…`).
//! A view of kassa's own checkout payments (those whose `order.created` told the order's number),
//! not a second copy.
//!
//! `paymentStatus` is an integer on these routes only: PENDING 0 (PROCESSING, or waiting to be
//! paid in person), COMPLETED 1 (APPROVED), FAILED 2 (DECLINED, FAILED, and CANCELLED or
//! REFUNDED: no money kept).

use axum::{
    Json, Router,
    extract::{Path, RawQuery, State},
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
    routing::get,
};
use kassa_platform::{
    auth::Access,
    http::{
        ApiError, ApiResult, MAX_LIMIT, Pagination,
        openapi::{self, InvalidParams, ProblemResponses},
        parse_uuid,
    },
};
use serde::Serialize;
use utoipa::{
    IntoParams, OpenApi, ToSchema,
    openapi::{
        Schema,
        schema::{ObjectBuilder, Type},
    },
};
use uuid::Uuid;

use crate::{
    api::AppState,
    domain::{Payment, PaymentStatus},
    store,
};

pub fn router(state: AppState) -> Router {
    let routes = |prefix: &str| {
        Router::new()
            .route(&format!("{prefix}/GetAllPayments"), get(list))
            .route(&format!("{prefix}/GetPaymentById/{{id}}"), get(read))
    };
    routes("/api/Payment")
        .merge(routes("/payments"))
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    paths(list, read),
    components(schemas(NumberedPayment)),
    modifiers(&ProblemResponses),
    tags((name = "payments (seed 001)", description = "Seed 001's payments, with their order's number and an integer status."))
)]
pub struct NumberedApi;

/// A payment as seed 001 shows it.
#[derive(Serialize, ToSchema)]
pub struct NumberedPayment {
    #[serde(rename = "paymentID")]
    payment_id: Uuid,
    /// The number of the payment's order.
    #[serde(rename = "orderID")]
    #[schema(minimum = 1)]
    order_id: i64,
    /// 0 PENDING, 1 COMPLETED, 2 FAILED.
    #[serde(rename = "paymentStatus")]
    #[schema(schema_with = payment_status)]
    payment_status: u8,
}

fn payment_status() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .enum_values(Some([0, 1, 2]))
        .description(Some("0 PENDING, 1 COMPLETED, 2 FAILED."))
        .into()
}

/// Seed 001's status of a payment.
fn seed_status(status: PaymentStatus) -> u8 {
    match status {
        PaymentStatus::Processing | PaymentStatus::Pending => 0,
        PaymentStatus::Approved => 1,
        PaymentStatus::Declined
        | PaymentStatus::Failed
        | PaymentStatus::Cancelled
        | PaymentStatus::Refunded => 2,
    }
}

impl NumberedPayment {
    fn of(payment: &Payment) -> Option<Self> {
        Some(NumberedPayment {
            payment_id: payment.id,
            order_id: payment.order_number?,
            payment_status: seed_status(payment.status),
        })
    }
}

/// `GetAllPayments` paging: seed 001 answers every payment at once; kassa answers a page at a
/// time, with the total in `X-Total-Count` and the next page in `Link`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListQuery {
    /// The page, from 1.
    #[param(minimum = 1, maximum = 1_000_000)]
    page: Option<u32>,
    /// Payments per page, 1 to 100 (100 when left out).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

/// List the payments of numbered orders, highest order number first, a page at a time.
#[utoipa::path(get, path = "/api/Payment/GetAllPayments", operation_id = "GetAllPayments", tag = "payments (seed 001)",
    params(ListQuery),
    security((), ("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, body = Vec<NumberedPayment>, description = "One page of payments: a signed-in customer's own, else every one.",
            headers(
                ("X-Total-Count" = i64, description = "How many payments there are in all."),
                ("Link" = String, description = "`<…?page=N&limit=L>; rel=\"next\"` while there are more."),
            )),
        (status = 401, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "The installation requires a token (`KASSA_REQUIRE_TOKEN`) and none valid came."),
        InvalidParams,
    ))]
pub async fn list(
    State(state): State<AppState>,
    access: Access,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let mut pagination = Pagination::from_query(query.as_deref())?;
    let asked_limit = query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .any(|pair| pair.starts_with("limit="));
    if !asked_limit {
        pagination.limit = MAX_LIMIT;
    }
    let owner = access.sees()?;
    let (payments, total) = store::numbered_page(&state.db, owner, pagination).await?;
    let views: Vec<NumberedPayment> = payments.iter().filter_map(NumberedPayment::of).collect();
    let mut response = Json(views).into_response();
    let headers = response.headers_mut();
    headers.insert("x-total-count", HeaderValue::from(total));
    let (page, limit) = (pagination.page, pagination.limit);
    if u64::from(page) * u64::from(limit) < total as u64
        && let Ok(link) = HeaderValue::from_str(&format!(
            "</api/Payment/GetAllPayments?page={}&limit={limit}>; rel=\"next\"",
            page + 1
        ))
    {
        headers.insert(header::LINK, link);
    }
    Ok(response)
}

/// The `{id}` of `GetPaymentById`: the payment's id.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct PaymentIdParam {
    /// The payment's `paymentID`.
    #[param(inline, value_type = openapi::Id)]
    id: String,
}

/// Read a payment by its `paymentID`.
#[utoipa::path(get, path = "/api/Payment/GetPaymentById/{id}", operation_id = "GetPaymentById", tag = "payments (seed 001)",
    params(PaymentIdParam),
    security((), ("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, body = NumberedPayment, description = "The payment."),
        (status = 404, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "No payment of a numbered order has this id, or none of the signed-in customer's: \"Payment not found with id: {id}\" (`payment_not_found`)."),
        (status = 401, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "The installation requires a token (`KASSA_REQUIRE_TOKEN`) and none valid came."),
        InvalidParams,
    ))]
pub async fn read(
    State(state): State<AppState>,
    access: Access,
    Path(id): Path<String>,
) -> ApiResult<Json<NumberedPayment>> {
    let id = parse_uuid("id", &id)?;
    access.sees()?;
    let not_found = || {
        ApiError::not_found(
            "payment_not_found",
            format!("Payment not found with id: {id}"),
        )
    };
    let payment = store::find(&state.db, id)
        .await?
        .filter(|p| access.may_see(p.user_id).unwrap_or(false))
        .ok_or_else(not_found)?;
    Ok(Json(NumberedPayment::of(&payment).ok_or_else(not_found)?))
}
