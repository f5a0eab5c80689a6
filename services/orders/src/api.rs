//! The orders HTTP API of seed 003: create, list, read and cancel orders.

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
    routing::{get, patch},
};
use kassa_contracts::{
    Currency, Envelope, EventContext,
    events::{OrderCancelled, OrderCreated},
    json::timestamp,
};
use kassa_platform::{
    access::{Policy, Rule},
    auth::Access,
    auth::Role,
    db::Db,
    http::{
        ApiError, ApiJson, ApiResult, PathId, RequestIds, not_null,
        openapi::{
            self, CurrencyCode, IdempotencyKeyHeader, InvalidBody, InvalidParams, PricedObject,
            ProblemResponses, SignedIn, TokenSecurity,
        },
        parse_amount, parse_currency, parse_uuid,
    },
    idempotency::{self, Begun, IdempotencyKey, Write, json_response},
    outbox,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, value::RawValue};
use std::collections::BTreeMap;

use utoipa::{
    IntoResponses, PartialSchema, ToSchema,
    openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder, link::LinkBuilder, schema::Schema},
};
use uuid::Uuid;

use crate::{
    NAME,
    domain::{Order, OrderStatus, Transition},
    placing::Placer,
    store,
};

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub default_currency: Currency,
    /// Stores orders placed without an `Idempotency-Key`, many per transaction under load.
    pub placer: Placer,
    /// Prices an order's items.
    pub catalog: crate::items::Catalog,
    /// Holds an order's items.
    pub inventory: crate::items::Inventory,
}

/// Customers place and follow their own orders; the staff, a kiosk and kassa's services anyone's.
const PLACES: Policy = Policy::CUSTOMER.and(&[Role::Kiosk, Role::Service]);

/// Seed 003's routes: its clients may be let in anonymously (`seed003`), and then see only
/// the orders no one owns.
pub const RULES: &[Rule] = &[
    Rule::get("/api/orders", Policy::CUSTOMER).opens_with("seed003"),
    Rule::post("/api/orders", PLACES).opens_with("seed003"),
    Rule::get("/api/orders/{id}", PLACES).opens_with("seed003"),
    Rule::patch("/api/orders/{id}", Policy::CUSTOMER.and(&[Role::Kiosk])).opens_with("seed003"),
    Rule::delete("/api/orders/{id}", Policy::CUSTOMER.and(&[Role::Kiosk])).opens_with("seed002"),
    Rule::patch("/api/orders/{id}/cancel", Policy::CUSTOMER).opens_with("seed003"),
];

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/orders", get(list_orders).post(create_order))
        .route(
            "/api/orders/{id}",
            get(get_order).patch(update_order).delete(delete_order),
        )
        .route("/api/orders/{id}/cancel", patch(cancel_order))
        .with_state(state)
}

/// `POST /api/orders` body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateOrder {
    user_id: String,
    #[serde(default)]
    total: Option<Box<RawValue>>,
    #[serde(default, deserialize_with = "not_null")]
    currency: Option<String>,
    /// Products of the catalog (seed 002): priced by the catalog, held in inventory.
    #[serde(default, deserialize_with = "not_null")]
    items: Option<Vec<ItemLine>>,
    /// Paid in person (seed 002): `Cash` or `QRIS`; else charged through the provider.
    #[serde(default, deserialize_with = "not_null")]
    payment_method: Option<String>,
}

/// The in-person payment methods an order may name, as the seed writes them.
const IN_PERSON: [&str; 2] = [kassa_contracts::events::CASH, kassa_contracts::events::QRIS];

fn payment_method_schema() -> Schema {
    openapi::any_case_text(
        &IN_PERSON,
        "Paid in person (seed 002), in any letter case: the order waits for the kiosk to confirm \
         its payment (`POST /api/Payment/{PaymentId}/confirm`) instead of being charged \
         through the provider.",
    )
}

/// The method an order names, as the seed writes it; a 422 for any other.
fn in_person_method(sent: Option<&str>) -> ApiResult<Option<String>> {
    let Some(sent) = sent else {
        return Ok(None);
    };
    IN_PERSON
        .iter()
        .find(|m| m.eq_ignore_ascii_case(sent.trim()))
        .map(|m| Some((*m).to_owned()))
        .ok_or_else(|| {
            ApiError::unprocessable(
                "invalid_payment_method",
                "`paymentMethod` is Cash or QRIS (or left out: the provider charges the order).",
            )
            .with_param("paymentMethod")
        })
}

/// One line of an order for products of the catalog.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ItemLine {
    #[schema(value_type = openapi::Id)]
    product_id: String,
    quantity: kassa_platform::validate::Whole<1, 10_000>,
}

impl PartialSchema for CreateOrder {
    fn schema() -> RefOr<Schema> {
        let priced = PricedObject {
            description: "An order to place: who places it and what it costs. The currency \
                decides how many decimal places `total` may have.",
            properties: vec![
                ("userId", openapi::Id::schema(), true),
                ("paymentMethod", payment_method_schema().into(), false),
            ],
            amount: "total",
            currency: "currency",
            // The document is the same for every configuration; the default is configurable.
            default_currency: Some(Currency::USD),
            example: json!({"userId": "d55fa6d6-63c2-4633-aeaf-ecf0c80fb48f", "total": 150.50}),
        }
        .schema();
        // Or products of the catalog, which price them; a `total` sent along must be theirs.
        let items = utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::Object)
            .description(Some(
                "An order for products of the catalog (seed 002): the catalog prices each line \
                 in the shop's currency (`KASSA_CURRENCY`) and inventory holds its stock for 15 \
                 minutes, until the order is paid. A `total` sent along must be the catalog's \
                 (422 `total_mismatch`).",
            ))
            .additional_properties(Some(
                utoipa::openapi::schema::AdditionalProperties::<Schema>::FreeForm(false),
            ))
            .property("userId", openapi::Id::schema())
            .required("userId")
            .property(
                "items",
                utoipa::openapi::ArrayBuilder::new()
                    .items(Ref::from_schema_name("ItemLine"))
                    .min_items(Some(1))
                    .max_items(Some(100)),
            )
            .required("items")
            .property("total", openapi::amount_input(2))
            .property("paymentMethod", payment_method_schema())
            .build();
        match priced {
            Schema::OneOf(mut one_of) => {
                one_of.items.push(RefOr::T(Schema::Object(items)));
                RefOr::T(Schema::OneOf(one_of))
            }
            other => RefOr::T(other),
        }
    }
}

impl ToSchema for CreateOrder {}

/// `PATCH /api/orders/{id}` body: only `CANCELLED` can be asked for.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrder {
    #[schema(schema_with = requestable_status)]
    status: String,
}

/// The statuses a client may ask for, in any case; the others (PENDING, PAID, FAILED) are a 422.
const REQUESTABLE: [&str; 2] = ["CANCELLED", "CANCELED"];

fn requestable_status() -> Schema {
    openapi::any_case_text(
        &REQUESTABLE,
        "CANCELLED (or CANCELED), in any letter case. PENDING, PAID and FAILED follow from the \
         payment and are refused with 422 `status_not_requestable`.",
    )
}

/// The answer to a create or cancel request: the work goes on asynchronously.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    order_id: Uuid,
    message: &'static str,
    /// Only in the answer to `POST /api/orders`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = pending_payment)]
    status: Option<&'static str>,
}

fn pending_payment() -> Schema {
    openapi::text_enum(["PENDING_PAYMENT"])
}

/// An order as the API shows it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    id: Uuid,
    user_id: Uuid,
    #[schema(schema_with = openapi::amount_output)]
    total: Box<RawValue>,
    #[schema(value_type = CurrencyCode)]
    currency: String,
    #[schema(schema_with = OrderStatus::schema)]
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_reason: Option<String>,
    /// The products ordered, as priced when the order was placed (orders for items, read one
    /// at a time).
    #[serde(skip_serializing_if = "Option::is_none")]
    items: Option<Vec<LineView>>,
    #[serde(serialize_with = "timestamp")]
    #[schema(value_type = String, format = DateTime)]
    created_at: chrono::DateTime<chrono::Utc>,
    #[serde(serialize_with = "timestamp")]
    #[schema(value_type = String, format = DateTime)]
    updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<Order> for OrderView {
    fn from(o: Order) -> Self {
        OrderView {
            id: o.id,
            user_id: o.user_id,
            total: o.total.to_json_number(),
            currency: o.total.currency().code().to_owned(),
            status: o.status.as_str(),
            failure_reason: o.failure_reason,
            items: None,
            created_at: o.created_at,
            updated_at: o.updated_at,
        }
    }
}

/// One line of an order for products of the catalog.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LineView {
    product_id: Uuid,
    name: String,
    #[schema(schema_with = openapi::amount_output)]
    unit_price: Box<RawValue>,
    quantity: i64,
    is_dispensable: bool,
}

impl From<crate::items::Line> for LineView {
    fn from(l: crate::items::Line) -> Self {
        LineView {
            product_id: l.product_id,
            name: l.name,
            unit_price: l.unit_price.to_json_number(),
            quantity: l.quantity,
            is_dispensable: l.is_dispensable,
        }
    }
}

/// Place an order; its payment is processed asynchronously.
#[utoipa::path(post, path = "/api/orders", tag = "orders", request_body = CreateOrder,
    params(IdempotencyKeyHeader), security((), ("bearer" = []), ("cookie" = [])),
    responses(
        (status = 202, body = Accepted, description = "The order is stored as PENDING and its \
            payment will be processed asynchronously; a repeat with the same Idempotency-Key gets \
            this same answer.", links(
            ("GetOrder" = (operation_id = "get_order", parameters(("id" = "$response.body#/orderId")))),
            ("UpdateOrder" = (operation_id = "update_order", parameters(("id" = "$response.body#/orderId")))),
            ("CancelOrder" = (operation_id = "cancel_order", parameters(("id" = "$response.body#/orderId")))),
            ("GetPaymentOfOrder" = (operation_id = "payment_by_order", parameters(("orderId" = "$response.body#/orderId")))),
        )),
        (status = 409, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "A request with this Idempotency-Key is still being processed (`idempotency_key_in_use`); retry shortly."),
        (status = 403, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "The token is a customer's or an admin's, and `userId` is someone else's (`user_mismatch`)."),
        (status = 422, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "This Idempotency-Key was used before with a different request (`idempotency_key_reused`)."),
        SignedIn,
        InvalidBody,
    ))]
pub async fn create_order(
    State(state): State<AppState>,
    access: Access,
    ids: RequestIds,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateOrder>,
) -> ApiResult<Response> {
    access.sees()?;
    let user_id = parse_uuid("userId", &body.user_id)?;
    access.acts_for(user_id, "userId")?;
    let key = IdempotencyKey::from_headers(&headers)?;
    let payment_method = in_person_method(body.payment_method.as_deref())?;
    if let Some(items) = body.items {
        if body.currency.is_some() {
            return Err(ApiError::unprocessable(
                "currency_with_items",
                "An order for products of the catalog is in the shop's currency; leave `currency` out.",
            )
            .with_param("currency"));
        }
        return create_with_items(
            &state,
            user_id,
            items,
            body.total,
            payment_method,
            key,
            &ids,
        )
        .await;
    }
    let currency = match &body.currency {
        Some(code) => parse_currency("currency", code)?,
        None => state.default_currency,
    };
    let raw_total = body.total.ok_or_else(|| {
        ApiError::invalid(
            "total",
            "missing_field",
            "Field `total` is required (or `items`, products of the catalog).",
        )
    })?;
    let total = parse_amount("total", &raw_total, currency)?;

    let order = Order::place(user_id, total);
    let event = Envelope::new(
        NAME,
        order.id,
        &OrderCreated {
            order_id: order.id,
            user_id,
            amount_minor: total.minor(),
            currency: currency.code().to_owned(),
            payment_method: payment_method.clone(),
            item: None,
            lines: Vec::new(),
            order_number: None,
        },
        &ids.event_context(),
    );
    let accepted = Accepted {
        order_id: order.id,
        message: "Order creation request accepted",
        status: Some("PENDING_PAYMENT"),
    };
    let body = serde_json::to_vec(&accepted).map_err(|_| ApiError::internal())?;
    let order_id = order.id;

    let minor = total.minor().to_be_bytes();
    let mut parts: Vec<&[u8]> = vec![user_id.as_bytes(), &minor, currency.code().as_bytes()];
    // Only when named, so a key's fingerprint is what it was before methods existed.
    if let Some(method) = &payment_method {
        parts.push(method.as_bytes());
    }
    let fingerprint = idempotency::fingerprint(&parts);
    let answer = place(
        &state,
        order,
        event,
        key.map(|k| (k, fingerprint)),
        ("orders.create", StatusCode::ACCEPTED, body),
    )
    .await?;
    tracing::info!(order_id = %order_id, total = %total, "order placed");
    Ok(answer)
}

/// Places an order for products of the catalog: priced by the catalog, its stock held by
/// inventory, then stored with its lines and `order.created`, all before the answer.
async fn create_with_items(
    state: &AppState,
    user_id: Uuid,
    items: Vec<ItemLine>,
    total: Option<Box<RawValue>>,
    payment_method: Option<String>,
    key: Option<IdempotencyKey>,
    ids: &RequestIds,
) -> ApiResult<Response> {
    if items.is_empty() || items.len() > 100 {
        return Err(
            ApiError::unprocessable("invalid_items", "An order holds one to 100 lines.")
                .with_param("items"),
        );
    }
    let wanted = items
        .iter()
        .enumerate()
        .map(|(i, line)| {
            Ok(crate::items::Wanted {
                product_id: parse_uuid(&format!("items[{i}].productId"), &line.product_id)?,
                quantity: line.quantity.get(),
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let currency = state.default_currency;
    // What the client says it costs is checked as an amount before anything is priced.
    let claimed = total
        .as_ref()
        .map(|raw| parse_amount("total", raw, currency))
        .transpose()?;
    let mut fingerprint_parts: Vec<Vec<u8>> = vec![user_id.as_bytes().to_vec()];
    for w in &wanted {
        fingerprint_parts.push(w.product_id.as_bytes().to_vec());
        fingerprint_parts.push(w.quantity.to_be_bytes().to_vec());
    }
    if let Some(claimed) = claimed {
        fingerprint_parts.push(claimed.minor().to_be_bytes().to_vec());
    }
    if let Some(method) = &payment_method {
        fingerprint_parts.push(method.as_bytes().to_vec());
    }
    let parts: Vec<&[u8]> = fingerprint_parts.iter().map(Vec::as_slice).collect();
    let fingerprint = idempotency::fingerprint(&parts);
    // A keyed request holds its key from here, so a duplicate waits for this one's answer
    // instead of holding stock a second time; one without a key writes once the catalog and
    // inventory have answered.
    let keyed = match key {
        None => None,
        Some(key) => {
            match idempotency::begin(&state.db, "orders.create", Some(key), || Ok(fingerprint))
                .await?
            {
                Begun::Replay(answer) => return Ok(answer),
                Begun::Fresh(write) => Some(write),
            }
        }
    };
    let (lines, priced) = crate::items::price(&state.catalog, &wanted, currency).await?;
    if let Some(claimed) = claimed
        && claimed != priced
    {
        return Err(ApiError::unprocessable(
            "total_mismatch",
            format!(
                "The items cost {} {} at the catalog's prices, not {}.",
                priced.to_decimal_string(),
                currency.code(),
                claimed.to_decimal_string()
            ),
        )
        .with_param("total"));
    }
    let mut order = Order::place(user_id, priced);
    order.item = Some(crate::items::summary(&lines));
    let mut event = Envelope::new(
        NAME,
        order.id,
        &OrderCreated {
            order_id: order.id,
            user_id,
            amount_minor: priced.minor(),
            currency: currency.code().to_owned(),
            payment_method,
            item: order.item.clone(),
            lines: lines.iter().map(crate::items::Line::ordered).collect(),
            order_number: None,
        },
        &ids.event_context(),
    );
    let accepted = Accepted {
        order_id: order.id,
        message: "Order creation request accepted",
        status: Some("PENDING_PAYMENT"),
    };
    let body = serde_json::to_vec(&accepted).map_err(|_| ApiError::internal())?;
    state.inventory.reserve(order.id, &lines).await?;
    let answer = async {
        let mut write = match keyed {
            Some(write) => write,
            None => Write::plain(&state.db).await?,
        };
        store::number(write.tx(), [(&mut order, &mut event)]).await?;
        store::insert(write.tx(), &order).await?;
        store::insert_lines(write.tx(), order.id, &lines).await?;
        outbox::add(write.tx(), &event).await?;
        write.finish(StatusCode::ACCEPTED, body).await
    }
    .await;
    if answer.is_err() {
        // Not stored: what was held for it goes back.
        state.inventory.release(order.id).await;
    }
    tracing::info!(order_id = %order.id, total = %priced, lines = lines.len(), "order for items placed");
    answer
}

/// Stores a new order with its event and answers `status` with `body`. Without an
/// `Idempotency-Key` the order joins whatever else is being placed right now; with one (and the
/// request's fingerprint) the key is claimed in the order's own transaction under `scope`, so a
/// concurrent duplicate waits on it and then replays the stored answer.
pub(crate) async fn place(
    state: &AppState,
    mut order: Order,
    mut event: kassa_contracts::Envelope,
    key: Option<(IdempotencyKey, String)>,
    (scope, status, body): (&str, StatusCode, Vec<u8>),
) -> ApiResult<Response> {
    match key {
        None => {
            state.placer.place(order, event).await?;
            Ok(json_response(status, body))
        }
        Some((key, fingerprint)) => {
            match idempotency::begin(&state.db, scope, Some(key), || Ok(fingerprint)).await? {
                Begun::Replay(answer) => Ok(answer),
                Begun::Fresh(mut write) => {
                    store::number(write.tx(), [(&mut order, &mut event)]).await?;
                    store::insert(write.tx(), &order).await?;
                    outbox::add(write.tx(), &event).await?;
                    write.finish(status, body).await
                }
            }
        }
    }
}

kassa_platform::list_endpoint! {
    /// List orders, newest first: a signed-in customer's own, else every order.
    fn list_orders(path = "/api/orders", tag = "orders", description = "One page of orders.",
        state = AppState, view = OrderView, page = store::page, owned_by_caller)
}

/// Read one order.
#[utoipa::path(get, path = "/api/orders/{id}", tag = "orders", params(("id" = inline(openapi::Id), Path, description = "The order's id.")),
    security((), ("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, body = OrderView, description = "The order."),
        (status = 404, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "No order has this id, or none the signed-in customer placed (`order_not_found`)."),
        SignedIn,
        InvalidParams,
    ))]
pub async fn get_order(
    State(state): State<AppState>,
    access: Access,
    PathId(id): PathId,
) -> ApiResult<Json<OrderView>> {
    access.sees()?;
    let order = store::find(&state.db, id).await?;
    let order = match order {
        Some(order) if access.may_see(Some(order.user_id))? => order,
        _ => return Err(order_not_found()),
    };
    // Only an order with words for what it is for can have lines: the checkout's orders cost
    // no second read.
    let lines = match order.item {
        Some(_) => store::lines(&state.db, &order).await?,
        None => Vec::new(),
    };
    let mut view = OrderView::from(order);
    if !lines.is_empty() {
        view.items = Some(lines.into_iter().map(LineView::from).collect());
    }
    Ok(Json(view))
}

/// Change an order's status; only `CANCELLED` can be asked for (PAID and FAILED follow from
/// the payment).
#[utoipa::path(patch, path = "/api/orders/{id}", tag = "orders", request_body = UpdateOrder,
    params(("id" = inline(openapi::Id), Path, description = "The order's id.")),
    security((), ("bearer" = []), ("cookie" = [])),
    responses(
        CancelAnswers,
        SignedIn,
        (status = 422, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "PENDING, PAID or FAILED was asked for; those follow from the payment (`status_not_requestable`)."),
        InvalidBody,
    ))]
pub async fn update_order(
    State(state): State<AppState>,
    access: Access,
    ids: RequestIds,
    PathId(id): PathId,
    ApiJson(body): ApiJson<UpdateOrder>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    access.sees()?;
    // Any letter case, nothing around the word: what the document's pattern says.
    let letters = body.status.bytes().all(|b| b.is_ascii_alphabetic());
    match OrderStatus::parse(&body.status).filter(|_| letters) {
        Some(OrderStatus::Cancelled) => cancel(&state.db, &access, id, &ids.event_context()).await,
        Some(_) => Err(ApiError::unprocessable(
            "status_not_requestable",
            "Only CANCELLED can be requested; PAID and FAILED follow from the payment.",
        )
        .with_param("status")),
        None => Err(ApiError::invalid(
            "status",
            "invalid_status",
            "`status` must be one of PENDING, PAID, FAILED, CANCELLED.",
        )),
    }
}

/// Cancel an order: a payment in progress is cancelled, an approved one refunded.
#[utoipa::path(patch, path = "/api/orders/{id}/cancel", tag = "orders",
    params(("id" = inline(openapi::Id), Path, description = "The order's id.")),
    security((), ("bearer" = []), ("cookie" = [])),
    responses(
        CancelAnswers,
        SignedIn,
        InvalidParams,
    ))]
pub async fn cancel_order(
    State(state): State<AppState>,
    access: Access,
    ids: RequestIds,
    PathId(id): PathId,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    cancel(&state.db, &access, id, &ids.event_context()).await
}

/// Delete an unpaid order, as seed 002 does: it is cancelled (its stock hold given back, its
/// payment cancelled) and kept on record; a paid one is refused.
#[utoipa::path(delete, path = "/api/orders/{id}", tag = "orders",
    params(("id" = inline(openapi::Id), Path, description = "The order's id.")),
    security((), ("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Cancelled (or it was already cancelled or failed); `order.cancelled` is published when it changed."),
        (status = 404, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "No order has this id, or none the signed-in customer placed (`order_not_found`)."),
        (status = 409, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "The order is paid or completed (`order_paid`)."),
        SignedIn,
        InvalidParams,
    ))]
pub async fn delete_order(
    State(state): State<AppState>,
    access: Access,
    ids: RequestIds,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    let _accepted = cancel_unless(&state.db, &access, id, &ids.event_context(), true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What either way of cancelling answers: 202 with a link to the order, 404 and 409.
struct CancelAnswers;

impl IntoResponses for CancelAnswers {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        let accepted = ResponseBuilder::new()
            .description(
                "The order is CANCELLED (or already was); a payment in progress is cancelled \
                 and an approved one refunded, asynchronously.",
            )
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Accepted")))
                    .build(),
            )
            .link(
                "GetOrder",
                LinkBuilder::new()
                    .operation_id("get_order")
                    .parameter("id", "$response.body#/orderId")
                    .build(),
            )
            .build();
        BTreeMap::from([
            ("202".to_owned(), RefOr::T(accepted)),
            (
                "404".to_owned(),
                RefOr::T(openapi::problem_response(
                    404,
                    "No order has this id, or none the signed-in customer placed \
                     (`order_not_found`).",
                )),
            ),
            (
                "409".to_owned(),
                RefOr::T(openapi::problem_response(
                    409,
                    "The order is FAILED and can no longer be cancelled (`order_not_cancellable`).",
                )),
            ),
        ])
    }
}

/// Cancels order `id` for `access`'s caller, who must be allowed to see it (else it is not
/// found).
async fn cancel(
    db: &Db,
    access: &Access,
    id: Uuid,
    ctx: &EventContext,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    cancel_unless(db, access, id, ctx, false).await
}

/// Cancels as [`cancel`] does; `keep_paid`: a paid order is refused (409 `order_paid`) rather
/// than cancelled and refunded.
pub(crate) async fn cancel_unless(
    db: &Db,
    access: &Access,
    id: Uuid,
    ctx: &EventContext,
    keep_paid: bool,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    access.sees()?;
    let mut tx = db.begin().await?;
    let order = match store::find_for_update(db, &mut tx, id).await? {
        Some(order) if access.may_see(Some(order.user_id))? => order,
        _ => return Err(order_not_found()),
    };
    if keep_paid && matches!(order.status, OrderStatus::Paid | OrderStatus::Completed) {
        return Err(ApiError::conflict(
            "order_paid",
            format!(
                "The order is {}: it is not deleted (cancel it to refund it).",
                order.status.as_str()
            ),
        ));
    }
    match order.status.on_cancel_requested() {
        Transition::To(status) => {
            store::set_status(&mut tx, id, status, None, chrono::Utc::now()).await?;
            outbox::add(
                &mut tx,
                &Envelope::new(NAME, id, &OrderCancelled { order_id: id }, ctx),
            )
            .await?;
            tx.commit().await?;
            tracing::info!(order_id = %id, from = order.status.as_str(), "order cancelled");
        }
        Transition::Ignore => tx.rollback().await?,
        Transition::Refuse => {
            return Err(ApiError::conflict(
                "order_not_cancellable",
                format!(
                    "The order is {} and can no longer be cancelled.",
                    order.status.as_str()
                ),
            ));
        }
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            order_id: id,
            message: "Order cancellation request accepted",
            status: None,
        }),
    ))
}

fn order_not_found() -> ApiError {
    ApiError::not_found("order_not_found", "No order has this id.")
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "kassa orders",
        description = "Orders of seed 003: placed PENDING, then PAID, FAILED or CANCELLED."
    ),
    paths(create_order, list_orders, get_order, update_order, cancel_order, delete_order),
    components(schemas(ItemLine, LineView, CreateOrder, UpdateOrder, Accepted, OrderView)),
    modifiers(&ProblemResponses, &TokenSecurity)
)]
pub struct OrdersApi;
