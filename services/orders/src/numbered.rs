//! Seed 001's order API: orders addressed by number (`orderID`, 1, 2, 3…) with integer statuses,
//! served where its order service serves them (`/api/Order/…`) and where its gateway does
//! (`/orders/…`). It is a view of kassa's own orders, not a second copy: an order placed here is
//! charged, cancelled and listed like any other, and any order shows here by its number.
//!
//! The seed's enums are integers on the wire, on these routes only: `status` PENDING 0,
//! CONFIRMED 1, FAILED 2; `paymentStatus` NOT_PAID 0, PAID 1, FAILED 2. A CANCELLED order
//! (what `DeleteOrderById` makes of one) is gone from this view, as a deleted order is from the
//! seed's, and stays on record everywhere else.

use axum::{
    Json, Router,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::Response,
    routing::{delete, get, post, put},
};
use kassa_contracts::{Envelope, Money, events::OrderCreated};
use kassa_platform::{
    access::{Policy, Rule},
    auth::Access,
    auth::Role,
    db::Db,
    http::{
        ApiError, ApiJson, ApiResult, Pagination, RequestIds, not_null,
        openapi::{
            self, IdempotencyKeyHeader, InvalidBody, InvalidParams, ProblemResponses, SignedIn,
        },
        parse_amount,
    },
    idempotency::{self, Begun, IdempotencyKey},
    listing, outbox,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{
    IntoParams, OpenApi, PartialSchema, ToSchema,
    openapi::{
        RefOr, Schema,
        schema::{ObjectBuilder, Type},
    },
};
use uuid::Uuid;

use crate::{
    NAME,
    api::{AppState, cancel_unless},
    domain::{Order, OrderStatus},
    store,
};

/// Seed 001's till: customers their own orders, the staff and a kiosk anyone's; its clients may
/// be let in anonymously (`seed001`), and then see only the orders no one owns.
pub const RULES: &[Rule] = &[
    Rule::post("/api/Order/CreateOrder", TILL).opens_with("seed001"),
    Rule::get("/api/Order/GetAllOrders", Policy::CUSTOMER).opens_with("seed001"),
    Rule::get("/api/Order/GetOrderById/{id}", TILL).opens_with("seed001"),
    Rule::put("/api/Order/UpdateOrderById/{id}", Policy::CUSTOMER).opens_with("seed001"),
    Rule::delete("/api/Order/DeleteOrderById/{id}", TILL).opens_with("seed001"),
    Rule::post("/orders/CreateOrder", TILL).opens_with("seed001"),
    Rule::get("/orders/GetAllOrders", Policy::CUSTOMER).opens_with("seed001"),
    Rule::get("/orders/GetOrderById/{id}", TILL).opens_with("seed001"),
    Rule::put("/orders/UpdateOrderById/{id}", Policy::CUSTOMER).opens_with("seed001"),
    Rule::delete("/orders/DeleteOrderById/{id}", TILL).opens_with("seed001"),
];

const TILL: Policy = Policy::CUSTOMER.and(&[Role::Kiosk]);

pub fn router(state: AppState) -> Router {
    let routes = |prefix: &str| {
        Router::new()
            .route(&format!("{prefix}/CreateOrder"), post(create))
            .route(&format!("{prefix}/GetAllOrders"), get(list))
            .route(&format!("{prefix}/GetOrderById/{{id}}"), get(read))
            .route(&format!("{prefix}/UpdateOrderById/{{id}}"), put(update))
            .route(&format!("{prefix}/DeleteOrderById/{{id}}"), delete(remove))
    };
    routes("/api/Order")
        .merge(routes("/orders"))
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    paths(create, list, read, update, remove),
    components(schemas(NumberedOrder)),
    modifiers(&ProblemResponses),
    tags((name = "orders (seed 001)", description = "Seed 001's orders, by number, with integer statuses."))
)]
pub struct NumberedApi;

/// An order as seed 001 shows it.
#[derive(Serialize, ToSchema)]
pub struct NumberedOrder {
    /// The order's number.
    #[serde(rename = "orderID")]
    #[schema(minimum = 1)]
    order_id: i64,
    /// What the order costs, in the installation's currency.
    #[serde(rename = "totalAmount")]
    #[schema(schema_with = openapi::amount_output)]
    total_amount: Box<RawValue>,
    /// 0 PENDING (its payment is under way), 1 CONFIRMED (paid), 2 FAILED.
    #[schema(schema_with = order_status)]
    status: u8,
    /// 0 NOT_PAID, 1 PAID, 2 FAILED.
    #[serde(rename = "paymentStatus")]
    #[schema(schema_with = payment_status)]
    payment_status: u8,
}

fn integer_enum(values: &[u8], description: &str) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .enum_values(Some(values.iter().copied()))
        .description(Some(description))
        .into()
}

fn order_status() -> Schema {
    integer_enum(&[0, 1, 2], "0 PENDING, 1 CONFIRMED, 2 FAILED.")
}

fn payment_status() -> Schema {
    integer_enum(&[0, 1, 2], "0 NOT_PAID, 1 PAID, 2 FAILED.")
}

/// Seed 001's statuses of an order. A cancelled order (what `DeleteOrderById` makes of one)
/// is not in the view: the routes answer as if it did not exist.
fn statuses(status: OrderStatus) -> (u8, u8) {
    match status {
        OrderStatus::Pending => (0, 0),
        OrderStatus::Paid | OrderStatus::Completed => (1, 1),
        OrderStatus::Failed | OrderStatus::Cancelled => (2, 2),
    }
}

impl NumberedOrder {
    fn of(order: &Order) -> Self {
        let (status, payment_status) = statuses(order.status);
        NumberedOrder {
            order_id: order.number,
            total_amount: order.total.to_json_number(),
            status,
            payment_status,
        }
    }
}

/// `CreateOrder` and `UpdateOrderById` bodies: seed 001's Order.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderBody {
    #[serde(rename = "orderID", default, deserialize_with = "not_null")]
    order_id: Option<serde_json::Number>,
    #[serde(rename = "totalAmount", default)]
    total_amount: Option<Box<RawValue>>,
    #[serde(default, deserialize_with = "not_null")]
    status: Option<serde_json::Number>,
    #[serde(rename = "paymentStatus", default, deserialize_with = "not_null")]
    payment_status: Option<serde_json::Number>,
}

/// A whole number as JSON may write it (`7` or `7.0`), if it is one an `i64` holds.
fn whole(n: &serde_json::Number) -> Option<i64> {
    n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= i64::MIN as f64 && *f < i64::MAX as f64)
            .map(|f| f as i64)
    })
}

/// A new order's body: [`OrderBody`] whose `orderID`, `status` and `paymentStatus` are 0 or left
/// out.
#[derive(Deserialize)]
#[serde(transparent)]
pub struct NewOrderBody(OrderBody);

/// The schema of a body: a new order's (`new`) or an update's.
fn body_schema(new: bool) -> RefOr<Schema> {
    let zero_or = |values: &[u8], what: &str| {
        if new {
            integer_enum(&[0], &format!("0 or left out: a new order starts {what}."))
        } else {
            integer_enum(values, "Kept as it is: an update changes the total only.")
        }
    };
    let order_id = if new {
        integer_enum(
            &[0],
            "0 or left out: the order gets its number when it is stored.",
        )
    } else {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0))
            .maximum(Some(i64::MAX))
            .description(Some("Ignored: the path names the order."))
            .into()
    };
    ObjectBuilder::new()
        .description(Some(if new {
            "Seed 001's Order, as a new one: its total."
        } else {
            "Seed 001's Order: its total, which must be the one it has (its payment was asked for \
             it); the other fields are kept as they are."
        }))
        .property("orderID", order_id)
        .property("totalAmount", openapi::amount_input(2))
        .required("totalAmount")
        .property("status", zero_or(&[0, 1, 2], "PENDING"))
        .property("paymentStatus", zero_or(&[0, 1, 2], "NOT_PAID"))
        .additional_properties(Some(
            utoipa::openapi::schema::AdditionalProperties::<Schema>::FreeForm(false),
        ))
        .examples([serde_json::json!({"totalAmount": 150.5})])
        .into()
}

impl PartialSchema for NewOrderBody {
    fn schema() -> RefOr<Schema> {
        body_schema(true)
    }
}

impl ToSchema for NewOrderBody {}

impl PartialSchema for OrderBody {
    fn schema() -> RefOr<Schema> {
        body_schema(false)
    }
}

impl ToSchema for OrderBody {}

impl OrderBody {
    fn total(&self, state: &AppState) -> ApiResult<Money> {
        let raw = self.total_amount.as_ref().ok_or_else(|| {
            ApiError::invalid(
                "totalAmount",
                "missing_field",
                "Field `totalAmount` is required.",
            )
        })?;
        parse_amount("totalAmount", raw, state.default_currency)
    }

    /// `orderID` (0 or left out in a new order; any whole number from 0 in an update, where the
    /// path names the order) and the statuses (seed 001's; 0 or left out in a new order).
    fn check(&self, new: bool) -> ApiResult<()> {
        match (self.order_id.as_ref().map(|n| (n, whole(n))), new) {
            (None, _) | (Some((_, Some(0))), _) => {}
            (Some((_, Some(id))), false) if id > 0 => {}
            (Some((n, _)), true) => {
                return Err(ApiError::invalid(
                    "orderID",
                    "invalid_field",
                    format!(
                        "A new order gets its number when it is stored: send orderID 0 or leave it out, not {n}."
                    ),
                ));
            }
            (Some((n, _)), false) => {
                return Err(ApiError::invalid(
                    "orderID",
                    "invalid_field",
                    format!("orderID is a whole number from 0, not {n}."),
                ));
            }
        }
        for (param, value) in [
            ("status", &self.status),
            ("paymentStatus", &self.payment_status),
        ] {
            let number = value.as_ref().map(|n| (n, whole(n)));
            match number {
                None | Some((_, Some(0))) => {}
                Some((_, Some(1 | 2))) if !new => {}
                Some((other, _)) => {
                    return Err(ApiError::invalid(
                        param,
                        "invalid_field",
                        if new {
                            format!(
                                "A new order starts PENDING and NOT_PAID: {param} is 0 or left out, not {other}."
                            )
                        } else {
                            format!("{param} is 0, 1 or 2, not {other}.")
                        },
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The `{id}` of these routes: an order number.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct NumberParam {
    /// The order's number (`orderID`).
    #[param(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    #[allow(dead_code)]
    id: i64,
}

/// Reads an order number: digits only, 1 or more.
fn parse_number(value: &str) -> ApiResult<i64> {
    value
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 1 && value.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            ApiError::invalid(
                "id",
                "invalid_id",
                format!("The order number is a whole number from 1, not {value:?}."),
            )
        })
}

fn not_found(number: i64) -> ApiError {
    ApiError::not_found("order_not_found", "Order with such ID is not found!")
        .with_param(format!("id={number}"))
}

/// The order numbered `number`, as `access` may see it, shown in seed 001's view.
async fn find(db: &Db, access: &Access, number: i64) -> ApiResult<(Order, NumberedOrder)> {
    access.sees()?;
    let order = store::find_by_number(db, number)
        .await?
        .filter(|o| o.status != OrderStatus::Cancelled)
        .filter(|o| access.may_see(Some(o.user_id)).unwrap_or(false))
        .ok_or_else(|| not_found(number))?;
    let view = NumberedOrder::of(&order);
    Ok((order, view))
}

/// Place an order of `totalAmount`; it is charged asynchronously (read it back by its number).
#[utoipa::path(post, path = "/api/Order/CreateOrder", operation_id = "CreateOrder", tag = "orders (seed 001)",
    request_body(content = NewOrderBody, content_type = "application/json"),
    params(IdempotencyKeyHeader),
    security((), ("bearer" = []), ("cookie" = [])),
    responses(
        (status = 201, body = NumberedOrder, description = "The order, PENDING and NOT_PAID, with its number; `Location` names where to read it. A repeat with the same Idempotency-Key gets this same answer and places nothing.",
            headers(("Location" = String, description = "`/api/Order/GetOrderById/{orderID}`"))),
        (status = 409, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "A request with this Idempotency-Key is still being processed (`idempotency_key_in_use`); retry shortly."),
        (status = 422, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "This Idempotency-Key was used before with a different request (`idempotency_key_reused`)."),
        SignedIn,
        InvalidBody,
    ))]
pub async fn create(
    State(state): State<AppState>,
    access: Access,
    ids: RequestIds,
    headers: HeaderMap,
    ApiJson(NewOrderBody(body)): ApiJson<NewOrderBody>,
) -> ApiResult<Response> {
    let key = IdempotencyKey::from_headers(&headers)?;
    body.check(true)?;
    let total = body.total(&state)?;
    // A signed-in customer's order is theirs; an anonymous one belongs to nobody (the nil id).
    let user = access.sees()?.unwrap_or(Uuid::nil());
    let fingerprint = idempotency::fingerprint(&[
        user.as_bytes(),
        &total.minor().to_be_bytes(),
        total.currency().code().as_bytes(),
    ]);
    let mut write = match idempotency::begin(
        &state.db,
        &format!("orders.create_numbered:{user}"),
        key,
        || Ok(fingerprint),
    )
    .await?
    {
        Begun::Replay(answer) => return Ok(answer),
        Begun::Fresh(write) => write,
    };
    let mut order = Order::place(user, total);
    let mut event = Envelope::new(
        NAME,
        order.id,
        &OrderCreated {
            order_id: order.id,
            user_id: user,
            amount_minor: total.minor(),
            currency: total.currency().code().to_owned(),
            payment_method: None,
            item: None,
            lines: Vec::new(),
            order_number: None,
        },
        &ids.event_context(),
    );
    store::number(write.tx(), [(&mut order, &mut event)]).await?;
    store::insert(write.tx(), &order).await?;
    outbox::add(write.tx(), &event).await?;
    let view = NumberedOrder::of(&order);
    let body = serde_json::to_vec(&view).map_err(|_| ApiError::internal())?;
    let mut answer = write.finish(StatusCode::CREATED, body).await?;
    tracing::info!(order_id = %order.id, number = order.number, total = %total, "numbered order placed");
    if let Ok(location) =
        HeaderValue::from_str(&format!("/api/Order/GetOrderById/{}", order.number))
    {
        answer.headers_mut().insert(header::LOCATION, location);
    }
    Ok(answer)
}

/// List orders, newest first, a page at a time (every order but the cancelled ones).
#[utoipa::path(get, path = "/api/Order/GetAllOrders", operation_id = "GetAllOrders", tag = "orders (seed 001)",
    params(Pagination),
    security((), ("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, body = Vec<NumberedOrder>, description = "One page of orders, newest first, as a plain array (100 unless `limit` says fewer; seed 001 answered every order at once): a signed-in customer's own, else every one.",
            headers(
                ("X-Total-Count" = i64, description = "How many orders there are in all."),
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
        .map(|order| NumberedOrder::of(&order));
    listing::plain_page(&page, "/api/Order/GetAllOrders", pairs)
}

/// Read an order by its number.
#[utoipa::path(get, path = "/api/Order/GetOrderById/{id}", operation_id = "GetOrderById", tag = "orders (seed 001)",
    params(NumberParam),
    security((), ("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, body = NumberedOrder, description = "The order."),
        (status = 404, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "No order has this number, or it was deleted, or the signed-in customer did not place it: \"Order with such ID is not found!\" (`order_not_found`)."),
        SignedIn,
        InvalidParams,
    ))]
pub async fn read(
    State(state): State<AppState>,
    access: Access,
    Path(id): Path<String>,
) -> ApiResult<Json<NumberedOrder>> {
    let number = parse_number(&id)?;
    Ok(Json(find(&state.db, &access, number).await?.1))
}

/// Change an order's total, as seed 001 allows: kassa has already asked for its payment, so only
/// the total it has stands (the request is then answered with the order); to charge another
/// amount, delete the order and place a new one.
#[utoipa::path(put, path = "/api/Order/UpdateOrderById/{id}", operation_id = "UpdateOrderById", tag = "orders (seed 001)",
    params(NumberParam),
    request_body(content = OrderBody, content_type = "application/json"),
    security((), ("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, body = NumberedOrder, description = "The order: `totalAmount` is the total it has."),
        (status = 404, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "No order has this number, or it was deleted (`order_not_found`)."),
        (status = 409, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "The order's payment was asked for its total, which can no longer change (`order_total_fixed`)."),
        SignedIn,
        InvalidBody,
    ))]
pub async fn update(
    State(state): State<AppState>,
    access: Access,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<OrderBody>,
) -> ApiResult<Json<NumberedOrder>> {
    let number = parse_number(&id)?;
    body.check(false)?;
    let total = body.total(&state)?;
    let (order, view) = find(&state.db, &access, number).await?;
    if total != order.total {
        return Err(ApiError::conflict(
            "order_total_fixed",
            format!(
                "The order's payment was asked for {}; its total can no longer change. Delete the order and place a new one.",
                order.total.to_decimal_string()
            ),
        ));
    }
    Ok(Json(view))
}

/// Delete an order: it is cancelled (its payment in progress cancelled) and leaves this view; it
/// stays on record. A paid order is not deleted.
#[utoipa::path(delete, path = "/api/Order/DeleteOrderById/{id}", operation_id = "DeleteOrderById", tag = "orders (seed 001)",
    params(NumberParam),
    security((), ("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Deleted: the order is CANCELLED and `order.cancelled` published."),
        (status = 404, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "No order has this number, or it was deleted before (`order_not_found`)."),
        (status = 409, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "The order is paid (`order_paid`) or failed (`order_not_cancellable`)."),
        SignedIn,
        InvalidParams,
    ))]
pub async fn remove(
    State(state): State<AppState>,
    access: Access,
    ids: RequestIds,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let number = parse_number(&id)?;
    let (order, _) = find(&state.db, &access, number).await?;
    let _cancelled =
        cancel_unless(&state.db, &access, order.id, &ids.event_context(), true).await?;
    Ok(StatusCode::NO_CONTENT)
}
