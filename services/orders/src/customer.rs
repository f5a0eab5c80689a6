//! Seed 004's order routes, for signed-in customers: place an order for an item (charged to the
//! card the customer saved) and read its status. Served where its order service serves them
//! (`/order/…`) and where its gateway does (`/api/order/…`), answering `{success, data,
//! message}`; errors also carry `success: false` and `message`.
//!
//! An order belongs to the user whose token placed it: a customer reads only their own (another
//! customer's is "not found", as if it did not exist), an admin reads every one.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::Response,
    routing::{get, post},
};
use kassa_contracts::{
    Envelope,
    events::{OrderCreated, SAVED_CARD},
};
use kassa_platform::{
    access::{Policy, Rule},
    auth::Caller,
    http::{
        ApiError, ApiJson, ApiResult, RequestIds,
        openapi::{
            self, IdempotencyKeyHeader, InvalidBody, InvalidParams, ProblemResponses, SignedIn,
            TokenSecurity,
        },
        parse_amount, parse_uuid,
    },
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{OpenApi, PartialSchema, ToSchema};
use uuid::Uuid;

use kassa_platform::idempotency::{self, IdempotencyKey};

use crate::{
    NAME,
    api::{AppState, place},
    domain::{Order, OrderStatus},
    store,
};

/// Seed 004's routes are for signed-in customers (and the staff).
pub const RULES: &[Rule] = &[
    Rule::post("/order/create", Policy::CUSTOMER),
    Rule::post("/api/order/create", Policy::CUSTOMER),
    Rule::get("/order/status/{orderId}", Policy::CUSTOMER),
    Rule::get("/api/order/status/{orderId}", Policy::CUSTOMER),
];

pub fn router(state: AppState) -> Router {
    let routes = |prefix: &str| {
        Router::new()
            .route(&format!("{prefix}/order/create"), post(create))
            .route(&format!("{prefix}/order/status/{{orderId}}"), get(status))
    };
    routes("")
        .merge(routes("/api"))
        .layer(axum::middleware::from_fn(
            kassa_platform::http::problem::envelope_errors,
        ))
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    paths(create, status),
    modifiers(&ProblemResponses, &TokenSecurity),
    tags((name = "orders", description = "Orders and their payment."))
)]
pub struct CustomerApi;

/// `POST /order/create` body, as seed 004's clients send it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    item: String,
    amount: Box<RawValue>,
}

impl PartialSchema for NewOrder {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .description(Some(
                "What to order and what it costs, in the installation's default currency \
                 (`KASSA_CURRENCY`).",
            ))
            .property(
                "item",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(200))
                    .pattern(Some(r"\S")),
            )
            .required("item")
            .property("amount", openapi::amount_input(2))
            .required("amount")
            .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::<
                utoipa::openapi::schema::Schema,
            >::FreeForm(false)))
            .examples([serde_json::json!({"item": "Margherita", "amount": 12.5})])
            .into()
    }
}

impl ToSchema for NewOrder {}

/// `{orderId, status}` as seed 004 names its statuses.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderState {
    order_id: Uuid,
    /// `pending` until the payment decides; `success` (paid), `failed`, or `cancelled`.
    #[schema(schema_with = seed_statuses)]
    status: &'static str,
}

fn seed_statuses() -> utoipa::openapi::schema::Schema {
    openapi::text_enum(["pending", "success", "failed", "cancelled"])
}

/// Seed 004's word for an order's status.
fn seed_status(status: OrderStatus) -> &'static str {
    match status {
        OrderStatus::Pending => "pending",
        OrderStatus::Paid | OrderStatus::Completed => "success",
        OrderStatus::Failed => "failed",
        OrderStatus::Cancelled => "cancelled",
    }
}

/// `{success, data, message}`.
#[derive(Serialize, ToSchema)]
pub struct OrderAnswer {
    /// Always `true`.
    success: bool,
    data: OrderState,
    message: &'static str,
}

/// Place an order, charged to the signed-in customer's saved card.
#[utoipa::path(post, path = "/order/create", tag = "orders",
    request_body(content = NewOrder, content_type = "application/json"),
    params(IdempotencyKeyHeader),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 201, body = OrderAnswer, description = "The order is stored as pending; its \
            payment goes on asynchronously (read it at `GET /order/status/{orderId}`). A repeat \
            with the same Idempotency-Key gets this same answer and places nothing.",
            links(("OrderStatus" = (operation_id = "status", parameters(("orderId" = "$response.body#/data/orderId")))))),
        (status = 409, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "A request with this Idempotency-Key is still being processed (`idempotency_key_in_use`); retry shortly."),
        (status = 422, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "This Idempotency-Key was used before with a different request (`idempotency_key_reused`)."),
        SignedIn, InvalidBody,
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ids: RequestIds,
    headers: HeaderMap,
    ApiJson(body): ApiJson<NewOrder>,
) -> ApiResult<Response> {
    let claims = caller.known()?;
    let key = IdempotencyKey::from_headers(&headers)?;
    let mut item = body.item;
    kassa_platform::validate::text("item", &mut item, 200)?;
    let total = parse_amount("amount", &body.amount, state.default_currency)?;
    let mut order = Order::place(claims.user_id, total);
    order.item = Some(item.clone());
    let event = Envelope::new(
        NAME,
        order.id,
        &OrderCreated {
            order_id: order.id,
            user_id: claims.user_id,
            amount_minor: total.minor(),
            currency: total.currency().code().to_owned(),
            payment_method: Some(SAVED_CARD.to_owned()),
            item: Some(item.clone()),
            lines: Vec::new(),
            order_number: None,
        },
        &ids.event_context(),
    );
    let order_id = order.id;
    let answer = OrderAnswer {
        success: true,
        data: OrderState {
            order_id,
            status: "pending",
        },
        message: "Order created successfully",
    };
    let body = serde_json::to_vec(&answer).map_err(|_| ApiError::internal())?;
    // Each customer's keys are their own; under one, the same item and amount is a repeat and
    // anything else a 422.
    let fingerprint = idempotency::fingerprint(&[
        claims.user_id.as_bytes(),
        item.as_bytes(),
        &total.minor().to_be_bytes(),
        total.currency().code().as_bytes(),
    ]);
    let key = key.map(|k| (k, fingerprint));
    let answer = place(
        &state,
        order,
        event,
        key,
        (
            &format!("orders.create_for:{}", claims.user_id),
            StatusCode::CREATED,
            body,
        ),
    )
    .await?;
    tracing::info!(order_id = %order_id, total = %total, "order placed for a saved card");
    Ok(answer)
}

fn order_not_found() -> ApiError {
    ApiError::not_found("order_not_found", "Order not found.").with_param("orderId")
}

/// The status of one of the signed-in customer's orders (an admin's: any order).
#[utoipa::path(get, path = "/order/status/{orderId}", tag = "orders",
    params(("orderId" = inline(openapi::Id), Path, description = "The order's id.")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, body = OrderAnswer, description = "The order's status."),
        (status = 404, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "The caller has no order with this id (`order_not_found`)."),
        SignedIn, InvalidParams,
    ))]
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
    Path(order_id): Path<String>,
) -> ApiResult<Json<OrderAnswer>> {
    caller.known()?;
    let order_id = parse_uuid("orderId", &order_id)?;
    let order = store::find(&state.db, order_id)
        .await?
        .filter(|o| caller.may_read(o.user_id))
        .ok_or_else(order_not_found)?;
    Ok(Json(OrderAnswer {
        success: true,
        data: OrderState {
            order_id: order.id,
            status: seed_status(order.status),
        },
        message: "Order status retrieved",
    }))
}
