//! The seed's routes for what is on sale: `GET /api/Product/availability` lists the products on
//! sale (as its clients read lists: a plain array, `X-Total-Count`), and
//! `PUT /api/Product/{ProductId}/availability` takes a product off sale or puts it back.

use axum::{
    Router,
    extract::{RawQuery, State},
    http::StatusCode,
    response::Response,
    routing::{get, put},
};
use kassa_platform::{
    access::{Policy, Rule},
    http::{
        ApiError, ApiJson, ApiResult, PathId, RequestIds,
        openapi::{self, InvalidBody, InvalidParams, ProblemResponses},
    },
    listing::Filters,
    resource::{Records, Style, list_answer},
};
use serde::Deserialize;
use utoipa::{
    OpenApi, ToSchema,
    openapi::{ArrayBuilder, ContentBuilder, Ref, RefOr},
};

use crate::Products;

const ON_SALE: &str = "/api/Product/availability";

/// Whether a product is on sale.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Availability {
    pub available: bool,
}

/// The products on sale, newest first.
#[utoipa::path(get, path = "/api/Product/availability", tag = "Product",
    operation_id = "list_available_products",
    params(kassa_platform::http::Pagination, ("isDispensable" = Option<bool>, Query, description = "Only products that a dispenser hands out (or that it does not)."), ("categoryId" = Option<openapi::Id>, Query, description = "Only products filed under this category.")),
    responses(
        (status = 200, description = "One page of the products on sale, as a plain array (100 unless `limit` says fewer); `X-Total-Count` tells how many in all, `Link` names the next page.",
            headers(("X-Total-Count" = i64, description = "How many products are on sale."), ("Link" = String, description = "`<…>; rel=\"next\"` when a next page exists."))),
        InvalidParams,
    ))]
pub async fn on_sale(
    State(products): State<Records<Products>>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let fixed = Filters::new().equal("available", Some(true));
    list_answer(&products, ON_SALE, query.as_deref(), Style::Seed, fixed).await
}

/// Put a product on sale or take it off; `product.updated` is published.
#[utoipa::path(put, path = "/api/Product/{ProductId}/availability", tag = "Product",
    operation_id = "set_product_availability", request_body = Availability,
    params(("ProductId" = inline(openapi::Id), Path, description = "The product's id.")),
    responses(
        (status = 204, description = "Done, as the seed answers: read the product for its new state."),
        (status = 404, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "No product has this id (`product_not_found`)."),
        InvalidBody,
    ))]
pub async fn set(
    State(products): State<Records<Products>>,
    PathId(id): PathId,
    ids: RequestIds,
    ApiJson(body): ApiJson<Availability>,
) -> ApiResult<StatusCode> {
    let mut tx = products.db().begin().await?;
    let changed = products
        .update_in(&mut tx, id, &ids.event_context(), |current| {
            (current.available != body.available).then(|| {
                let mut next = current.clone();
                next.available = body.available;
                next
            })
        })
        .await?;
    match changed {
        Some(record) => {
            tx.commit().await?;
            products.cache_changed(&record).await;
        }
        None => {
            // Already so, or no such product.
            let exists = products.find(id).await?.is_some();
            tx.rollback().await?;
            if !exists {
                return Err(ApiError::not_found(
                    "product_not_found",
                    "No product has this id.",
                ));
            }
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Anyone sees what is on sale; the staff say what is.
pub const RULES: &[Rule] = &[
    Rule::get(ON_SALE, Policy::PUBLIC),
    Rule::put("/api/Product/{id}/availability", Policy::STAFF),
];

/// The seed's availability routes over `products`.
pub fn router(products: Records<Products>) -> Router {
    Router::new()
        .route(ON_SALE, get(on_sale))
        .route("/api/Product/{id}/availability", put(set))
        .with_state(products)
}

#[derive(OpenApi)]
#[openapi(paths(on_sale, set), components(schemas(Availability, openapi::Id)), modifiers(&ProblemResponses))]
struct Doc;

/// The document of the availability routes.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = Doc::openapi();
    // The records are the kit's `ProductRecord`, which has no Rust type to name above.
    if let Some(op) = doc
        .paths
        .paths
        .get_mut(ON_SALE)
        .and_then(|p| p.get.as_mut())
        && let Some(RefOr::T(ok)) = op.responses.responses.get_mut("200")
    {
        ok.content.insert(
            "application/json".into(),
            ContentBuilder::new()
                .schema(Some(
                    ArrayBuilder::new().items(Ref::from_schema_name("ProductRecord")),
                ))
                .build()
                .into(),
        );
    }
    doc
}
