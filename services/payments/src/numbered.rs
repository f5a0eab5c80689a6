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
    response::Response,
    routing::get,
};
use kassa_platform::{
    access::{Policy, Rule},
    auth::Access,
    http::{
        ApiError, ApiResult, Pagination,
        openapi::{self, InvalidParams, ProblemResponses, SignedIn},
        parse_uuid,
    },
    listing,
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

/// Seed 001's payments: customers their own, the staff everyone's; its clients may be let in
/// anonymously (`seed001`), and then see only the payments no one owns.
pub const RULES: &[Rule] = &[
    Rule::get("/api/Payment/GetAllPayments", Policy::CUSTOMER).opens_with("seed001"),
    Rule::get("/api/Payment/GetPaymentById/{id}", Policy::CUSTOMER).opens_with("seed001"),
    Rule::get("/payments/GetAllPayments", Policy::CUSTOMER).opens_with("seed001"),
    Rule::get("/payments/GetPaymentById/{id}", Policy::CUSTOMER).opens_with("seed001"),
];

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
    /// A payment of a numbered order (the only ones the view shows) in seed 001's view.
    fn of(payment: &Payment) -> Self {
        NumberedPayment {
            payment_id: payment.id,
            order_id: payment.order_number.unwrap_or_default(),
            payment_status: seed_status(payment.status),
        }
    }
}

/// List the payments of numbered orders, highest order number first, a page at a time.
#[utoipa::path(get, path = "/api/Payment/GetAllPayments", operation_id = "GetAllPayments", tag = "payments (seed 001)",
    params(Pagination),
    security((), ("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, body = Vec<NumberedPayment>, description = "One page of payments as a plain array (100 unless `limit` says fewer; seed 001 answered every payment at once): a signed-in customer's own, else every one.",
            headers(
                ("X-Total-Count" = i64, description = "How many payments there are in all."),
                ("Link" = String, description = "`<…>; rel=\"next\"` when a next page exists."),
            )),
        SignedIn,
        InvalidParams,
    ))]
pub async fn list(
    State(state): State<AppState>,
    access: Access,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let owner = access.sees()?;
    let (pagination, pairs) = listing::list_query(query.as_deref(), &[], true)?;
    let page = store::numbered_page(&state.db, pagination, owner)
        .await?
        .map(|payment| NumberedPayment::of(&payment));
    listing::plain_page(&page, "/api/Payment/GetAllPayments", pairs)
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
        SignedIn,
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
        .filter(|p| p.order_number.is_some())
        .filter(|p| access.may_see(p.user_id).unwrap_or(false))
        .ok_or_else(not_found)?;
    Ok(Json(NumberedPayment::of(&payment)))
}
