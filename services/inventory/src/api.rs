//! The inventory's routes: the seed's (`/api/Inventory`, `/api/StockMovement/{inventoryId}`,
//! answered as its clients read them), kassa's (`/api/inventory`, restocks and write-offs by
//! units moved), and the reservations the orders service makes when an order is placed.

use axum::{
    Json, Router,
    extract::{Path, RawQuery, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use chrono::Duration;
use kassa_contracts::events::OrderItem;
use kassa_platform::{
    access::{Policy, Rule},
    auth::Role,
    auth::{Access, Caller},
    db::Db,
    http::{
        ApiError, ApiJson, ApiResult, Page, Pagination, PathId, RequestIds,
        openapi::{self, InvalidBody, InvalidParams, ProblemResponses},
        parse_uuid,
    },
    listing::{Filters, Listing, list_query, plain_page},
    validate::{Text, Whole},
};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::stock::{self, HeldLine, Item, Movement, Mover, Reason};

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
}

/// Who is moving stock, for the movement's `by`.
fn mover(access: &Access, ids: &RequestIds) -> Mover {
    let by = match &access.caller {
        Caller::Anonymous => "anonymous".to_owned(),
        Caller::Known(claims) => {
            let role = serde_json::to_value(claims.role)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            format!("{role}:{}", claims.user_id)
        }
    };
    Mover {
        by,
        ctx: ids.event_context(),
    }
}

fn not_found() -> ApiError {
    ApiError::not_found("inventory_not_found", "No inventory item has this id.")
}

const ITEMS: Listing = Listing {
    table: "stock",
    columns: std::borrow::Cow::Borrowed(stock::ITEM_COLUMNS),
    order_by: "created_at DESC, id DESC",
};

const MOVEMENTS: Listing = Listing {
    table: "stock_movements",
    columns: std::borrow::Cow::Borrowed(stock::MOVEMENT_COLUMNS),
    order_by: "created_at DESC, id DESC",
};

async fn items_page(
    db: &Db,
    query: Option<&str>,
    seed: bool,
) -> ApiResult<(Page<Item>, Vec<(String, String)>)> {
    let (pagination, pairs) = list_query(query, &["productId"], seed)?;
    let mut filters = Filters::new();
    for (name, value) in &pairs {
        if name == "productId" {
            filters = filters.equal("product_id", Some(parse_uuid("productId", value)?));
        }
    }
    let page = ITEMS
        .page(db, pagination, &filters, stock::item_from)
        .await?;
    Ok((page, pairs))
}

/// Stock levels, as the seed's clients read them.
#[utoipa::path(get, path = "/api/Inventory", tag = "Inventory", operation_id = "list_inventory_seed",
    params(Pagination, ("productId" = Option<openapi::Id>, Query, description = "Only the stock of this product.")),
    responses(
        (status = 200, body = [Item], description = "One page of stock levels, as a plain array (100 unless `limit` says fewer); `X-Total-Count` tells how many in all, `Link` names the next page.",
            headers(("X-Total-Count" = i64, description = "How many items pass the filters."), ("Link" = String, description = "`<…>; rel=\"next\"` when a next page exists."))),
        InvalidParams,
    ))]
pub async fn seed_list(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let (page, pairs) = items_page(&state.db, query.as_deref(), true).await?;
    plain_page(&page, "/api/Inventory", pairs)
}

/// Stock levels, newest item first.
#[utoipa::path(get, path = "/api/inventory", tag = "Inventory", operation_id = "list_inventory",
    params(Pagination, ("productId" = Option<openapi::Id>, Query, description = "Only the stock of this product.")),
    responses((status = 200, body = Page<Item>, description = "One page and the paging facts."), InvalidParams))]
pub async fn list(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Page<Item>>> {
    Ok(Json(
        items_page(&state.db, query.as_deref(), false).await?.0,
    ))
}

/// One product's stock.
#[utoipa::path(get, path = "/api/inventory/{id}", tag = "Inventory",
    params(("id" = inline(openapi::Id), Path, description = "The inventory item's id.")),
    responses(
        (status = 200, body = Item, description = "The item."),
        (status = 404, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "No inventory item has this id (`inventory_not_found`)."),
        InvalidParams,
    ))]
pub async fn read(State(state): State<AppState>, PathId(id): PathId) -> ApiResult<Json<Item>> {
    let row = kassa_platform::db::sql_assembled(format!(
        "SELECT {} FROM stock WHERE id = $1",
        stock::ITEM_COLUMNS
    ))
    .bind(id)
    .fetch_optional(&state.db)
    .await?
    .ok_or_else(not_found)?;
    Ok(Json(stock::item_from(&row)?))
}

/// What the seed's `PUT /api/Inventory/{id}` changes: the units counted on hand, the low-stock
/// threshold, or both.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StockUpdate {
    /// Units on hand and not sold (available plus reserved), as counted; the difference is a
    /// `RESTOCK` or `WRITE_OFF` movement. Never below the units reserved.
    #[serde(default)]
    pub quantity: Option<Whole<0, 1_000_000_000>>,
    #[serde(default)]
    pub low_stock_threshold: Option<Whole<0, 1_000_000_000>>,
    /// Why, for the movement.
    #[serde(default)]
    pub note: Option<Text<500>>,
}

/// Set a product's counted stock or its low-stock threshold.
#[utoipa::path(put, path = "/api/Inventory/{id}", tag = "Inventory", request_body = StockUpdate,
    params(("id" = inline(openapi::Id), Path, description = "The inventory item's id.")),
    responses(
        (status = 200, body = Item, description = "The item as changed."),
        (status = 404, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "No inventory item has this id (`inventory_not_found`)."),
        (status = 409, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "`quantity` is below the units reserved for orders (`below_reserved`)."),
        InvalidBody,
    ))]
pub async fn update(
    State(state): State<AppState>,
    PathId(id): PathId,
    access: Access,
    ids: RequestIds,
    ApiJson(body): ApiJson<StockUpdate>,
) -> ApiResult<Json<Item>> {
    let mover = mover(&access, &ids);
    let mut tx = state.db.begin().await?;
    let mut item = stock::lock(&state.db, &mut tx, id)
        .await?
        .ok_or_else(not_found)?;
    if let Some(threshold) = body.low_stock_threshold {
        item.low_stock_threshold = threshold.get();
        let was_low = item.low;
        item.low = item.available <= item.low_stock_threshold;
        stock::save(&mut tx, &item).await?;
        if item.low && !was_low {
            stock::announce_low(&mut tx, &item, &mover.ctx).await?;
        }
    }
    if let Some(quantity) = body.quantity {
        let counted = quantity.get();
        if counted < item.reserved {
            return Err(ApiError::conflict(
                "below_reserved",
                format!(
                    "{} units are reserved for orders; the quantity on hand cannot be fewer.",
                    item.reserved
                ),
            )
            .with_param("quantity"));
        }
        let change = counted - item.quantity;
        let note = body.note.as_deref();
        if change > 0 {
            stock::moved(
                &mut tx,
                &mut item,
                Reason::Restock,
                change,
                None,
                &mover,
                note,
            )
            .await?;
        } else if change < 0 {
            stock::moved(
                &mut tx,
                &mut item,
                Reason::WriteOff,
                -change,
                None,
                &mover,
                note,
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(Json(item))
}

/// Units moved in or out of the shop.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Units {
    pub quantity: Whole<1, 1_000_000_000>,
    /// Why, for the movement.
    #[serde(default)]
    pub note: Option<Text<500>>,
}

async fn move_units(
    state: &AppState,
    id: Uuid,
    reason: Reason,
    body: Units,
    mover: Mover,
) -> ApiResult<Json<Movement>> {
    let mut tx = state.db.begin().await?;
    let mut item = stock::lock(&state.db, &mut tx, id)
        .await?
        .ok_or_else(not_found)?;
    let quantity = body.quantity.get();
    if reason == Reason::WriteOff && item.available < quantity {
        return Err(ApiError::conflict(
            "insufficient_stock",
            format!(
                "{} units are available; {quantity} cannot be written off.",
                item.available
            ),
        )
        .with_param("quantity"));
    }
    let movement = stock::moved(
        &mut tx,
        &mut item,
        reason,
        quantity,
        None,
        &mover,
        body.note.as_deref(),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(movement))
}

/// Add units to a product's stock (a delivery). Safe beside sales: it adds, it does not set.
#[utoipa::path(post, path = "/api/inventory/{id}/restock", tag = "Inventory", request_body = Units,
    params(("id" = inline(openapi::Id), Path, description = "The inventory item's id.")),
    responses(
        (status = 200, body = Movement, description = "The movement, with the item's counts after it."),
        (status = 404, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "No inventory item has this id (`inventory_not_found`)."),
        InvalidBody,
    ))]
pub async fn restock(
    State(state): State<AppState>,
    PathId(id): PathId,
    access: Access,
    ids: RequestIds,
    ApiJson(body): ApiJson<Units>,
) -> ApiResult<Json<Movement>> {
    move_units(&state, id, Reason::Restock, body, mover(&access, &ids)).await
}

/// Take available units out of a product's stock (damaged, lost).
#[utoipa::path(post, path = "/api/inventory/{id}/write-off", tag = "Inventory", request_body = Units,
    params(("id" = inline(openapi::Id), Path, description = "The inventory item's id.")),
    responses(
        (status = 200, body = Movement, description = "The movement, with the item's counts after it."),
        (status = 404, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "No inventory item has this id (`inventory_not_found`)."),
        (status = 409, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "Fewer units are available (`insufficient_stock`)."),
        InvalidBody,
    ))]
pub async fn write_off(
    State(state): State<AppState>,
    PathId(id): PathId,
    access: Access,
    ids: RequestIds,
    ApiJson(body): ApiJson<Units>,
) -> ApiResult<Json<Movement>> {
    move_units(&state, id, Reason::WriteOff, body, mover(&access, &ids)).await
}

async fn movements_page(
    db: &Db,
    inventory_id: &str,
    query: Option<&str>,
    seed: bool,
) -> ApiResult<(Page<Movement>, Vec<(String, String)>)> {
    let id = parse_uuid("inventoryId", inventory_id)?;
    let (pagination, pairs) = list_query(query, &[], seed)?;
    let exists = kassa_platform::db::sql("SELECT 1 AS one FROM stock WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await?;
    if exists.is_none() {
        return Err(not_found());
    }
    let filters = Filters::new().equal("inventory_id", Some(id));
    let page = MOVEMENTS
        .page(db, pagination, &filters, stock::movement_from)
        .await?;
    Ok((page, pairs))
}

/// A product's stock movements, newest first, as the seed's clients read them.
#[utoipa::path(get, path = "/api/StockMovement/{inventoryId}", tag = "Inventory",
    params(("inventoryId" = inline(openapi::Id), Path, description = "The inventory item's id."), Pagination),
    responses(
        (status = 200, body = [Movement], description = "One page of movements, as a plain array (100 unless `limit` says fewer); `X-Total-Count` tells how many in all, `Link` names the next page.",
            headers(("X-Total-Count" = i64, description = "How many movements the item has."), ("Link" = String, description = "`<…>; rel=\"next\"` when a next page exists."))),
        (status = 404, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "No inventory item has this id (`inventory_not_found`)."),
        InvalidParams,
    ))]
pub async fn seed_movements(
    State(state): State<AppState>,
    Path(inventory_id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let (page, pairs) = movements_page(&state.db, &inventory_id, query.as_deref(), true).await?;
    plain_page(&page, &format!("/api/StockMovement/{inventory_id}"), pairs)
}

/// A product's stock movements, newest first.
#[utoipa::path(get, path = "/api/inventory/{id}/movements", tag = "Inventory",
    params(("id" = inline(openapi::Id), Path, description = "The inventory item's id."), Pagination),
    responses(
        (status = 200, body = Page<Movement>, description = "One page and the paging facts."),
        (status = 404, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "No inventory item has this id (`inventory_not_found`)."),
        InvalidParams,
    ))]
pub async fn movements(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Page<Movement>>> {
    Ok(Json(
        movements_page(&state.db, &id, query.as_deref(), false)
            .await?
            .0,
    ))
}

/// What an order holds.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    pub order_id: Uuid,
    pub items: Vec<HeldLine>,
}

/// One line of what an order asks to hold.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WantedLine {
    #[schema(value_type = openapi::Id)]
    pub product_id: String,
    pub quantity: Whole<1, 10_000>,
}

/// What the orders service asks to hold when an order is placed.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Reserve {
    #[schema(value_type = openapi::Id)]
    pub order_id: String,
    /// One to 100 lines; a product named twice holds the sum.
    pub items: Vec<WantedLine>,
    /// How long the hold lasts unless the order is paid: 1 s to 24 h, 900 (15 minutes)
    /// unless given.
    #[serde(default)]
    pub expires_in_seconds: Option<Whole<1, 86_400>>,
}

/// Hold stock for an order: all its items or none.
#[utoipa::path(post, path = "/api/reservations", tag = "Inventory", request_body = Reserve,
    responses(
        (status = 201, body = Reservation, description = "Held; each line expires at `expiresAt` unless the order is paid."),
        (status = 200, body = Reservation, description = "This order already holds these items: the hold as it stands."),
        (status = 409, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "A product has fewer units available than asked for (`insufficient_stock`, the detail names it), or the order already holds other items (`reservation_exists`)."),
        (status = 422, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "No items, or more than 100 (`invalid_items`)."),
        InvalidBody,
    ))]
pub async fn reserve(
    State(state): State<AppState>,
    access: Access,
    ids: RequestIds,
    ApiJson(body): ApiJson<Reserve>,
) -> ApiResult<Response> {
    let order_id = parse_uuid("orderId", &body.order_id)?;
    if body.items.is_empty() || body.items.len() > 100 {
        return Err(
            ApiError::unprocessable("invalid_items", "An order holds one to 100 lines.")
                .with_param("items"),
        );
    }
    let items = body
        .items
        .iter()
        .enumerate()
        .map(|(i, line)| {
            Ok(OrderItem {
                product_id: parse_uuid(&format!("items[{i}].productId"), &line.product_id)?,
                quantity: line.quantity.get(),
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let ttl = body.expires_in_seconds.map_or(900, Whole::get);
    let expires_at = kassa_contracts::now() + Duration::seconds(ttl);
    let mover = mover(&access, &ids);
    let mut tx = state.db.begin().await?;
    let (fresh, lines) =
        stock::reserve(&state.db, &mut tx, order_id, &items, expires_at, &mover).await?;
    tx.commit().await?;
    let status = if fresh {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(Reservation {
            order_id,
            items: lines,
        }),
    )
        .into_response())
}

/// What an order holds.
#[utoipa::path(get, path = "/api/reservations/{orderId}", tag = "Inventory",
    params(("orderId" = inline(openapi::Id), Path, description = "The order's id.")),
    responses(
        (status = 200, body = Reservation, description = "Each line and where it stands."),
        (status = 404, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "The order holds nothing and never did (`reservation_not_found`)."),
        InvalidParams,
    ))]
pub async fn read_reservation(
    State(state): State<AppState>,
    PathId(order_id): PathId,
) -> ApiResult<Json<Reservation>> {
    let mut tx = state.db.begin().await?;
    let lines = stock::holds(&state.db, &mut tx, order_id).await?;
    tx.rollback().await?;
    if lines.is_empty() {
        return Err(reservation_not_found());
    }
    Ok(Json(Reservation {
        order_id,
        items: lines,
    }))
}

fn reservation_not_found() -> ApiError {
    ApiError::not_found(
        "reservation_not_found",
        "This order holds nothing and never did.",
    )
}

/// Give what an order holds back to sale (the order will not go ahead).
#[utoipa::path(delete, path = "/api/reservations/{orderId}", tag = "Inventory",
    params(("orderId" = inline(openapi::Id), Path, description = "The order's id.")),
    responses(
        (status = 204, description = "Released, or there was nothing left to release."),
        (status = 404, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "The order holds nothing and never did (`reservation_not_found`)."),
        InvalidParams,
    ))]
pub async fn release(
    State(state): State<AppState>,
    PathId(order_id): PathId,
    access: Access,
    ids: RequestIds,
) -> ApiResult<StatusCode> {
    let mover = mover(&access, &ids);
    let mut tx = state.db.begin().await?;
    if stock::holds(&state.db, &mut tx, order_id).await?.is_empty() {
        return Err(reservation_not_found());
    }
    stock::release(&state.db, &mut tx, order_id, Reason::Released, &mover).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Stock is the staff's to see and change (a kiosk reads it); a reservation is the orders
/// service's, holding an order's items.
pub const RULES: &[Rule] = &[
    Rule::get("/api/Inventory", STOCK_READERS).opens_with("seed002"),
    Rule::put("/api/Inventory/{id}", Policy::STAFF),
    Rule::get("/api/StockMovement/{inventoryId}", Policy::STAFF),
    Rule::get("/api/inventory", STOCK_READERS),
    Rule::get("/api/inventory/{id}", STOCK_READERS),
    Rule::get("/api/inventory/{id}/movements", Policy::STAFF),
    Rule::post("/api/inventory/{id}/restock", Policy::STAFF),
    Rule::post("/api/inventory/{id}/write-off", Policy::STAFF),
    Rule::post("/api/reservations", HOLDERS),
    Rule::get("/api/reservations/{orderId}", HOLDERS),
    Rule::delete("/api/reservations/{orderId}", HOLDERS),
];

const STOCK_READERS: Policy = Policy::STAFF.and(&[Role::Kiosk]);
const HOLDERS: Policy = Policy::STAFF.and(&[Role::Service]);

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/Inventory", get(seed_list))
        .route("/api/Inventory/{id}", put(update))
        .route("/api/StockMovement/{inventoryId}", get(seed_movements))
        .route("/api/inventory", get(list))
        .route("/api/inventory/{id}", get(read))
        .route("/api/inventory/{id}/movements", get(movements))
        .route("/api/inventory/{id}/restock", post(restock))
        .route("/api/inventory/{id}/write-off", post(write_off))
        .route("/api/reservations", post(reserve))
        .route(
            "/api/reservations/{orderId}",
            get(read_reservation).delete(release),
        )
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    paths(seed_list, update, seed_movements, list, read, movements, restock, write_off, reserve, read_reservation, release),
    components(schemas(Item, Movement, StockUpdate, Units, Reserve, WantedLine, Reservation, HeldLine, openapi::Id)),
    modifiers(&ProblemResponses)
)]
pub struct ApiDoc;
