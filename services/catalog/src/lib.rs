//! The catalog service of seed 002 (its Product Service): what a shop sells, at what price, in
//! which category, whether a dispenser hands it out and whether it is on sale now, with
//! `product.created|updated|deleted` and `category.created|updated|deleted` events.
//!
//! Products are served under `/api/products` and, as the seed's clients call them,
//! `/api/Product` (with its `availability` routes); categories under `/api/categories`.
//!
//! - `categories.rs`: the categories products are filed under
//! - `availability.rs`: the seed's routes for what is on sale

pub mod availability;
pub mod categories;

use kassa_platform::{
    access::Policy,
    db::{Tx, sql},
    http::ApiError,
    resource::{Field, Resource, ResourceSpec, Stored, Unique},
    service::{BuildError, Infra, ServiceParts},
    validate::{Amount, Text},
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

kassa_platform::records_service! {
    name: "catalog", port: 5003, resource: Products,
    mounts: [kassa "/api/products", seed "/api/Product"],
    access: { read: Policy::PUBLIC, write: Policy::STAFF },
    more_routes: ["/api/categories"],
    more_access: [categories::RULES, availability::RULES],
    migrations: [1 "0001_catalog"],
    document: document,
    extend: extend,
}

/// The routes of products, of their categories and of the seed's availability.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = kassa_platform::resource::document::<Products>(MOUNTS);
    doc.merge(kassa_platform::resource::document::<categories::Categories>(categories::MOUNTS));
    doc.merge(availability::document());
    doc
}

fn extend(
    infra: &Infra,
    mut parts: ServiceParts,
    products: kassa_platform::resource::Records<Products>,
) -> Result<ServiceParts, BuildError> {
    parts.api = parts
        .api
        .merge(categories::api(categories::records(infra.db()?)))
        .merge(availability::router(products));
    Ok(parts)
}

/// A product, as clients send and read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Product {
    pub name: Text<200>,
    /// The price in the shop's currency (the orders service's `KASSA_CURRENCY`), exact to the
    /// hundredth; above zero.
    pub price: Amount<2>,
    /// The category it is filed under (`/api/categories`), if any.
    #[serde(default)]
    pub category_id: Option<Uuid>,
    /// Whether a dispenser hands it out: each one paid for gets a one-time pickup code.
    #[serde(default)]
    pub is_dispensable: bool,
    /// Whether it is on sale now; orders for a product that is not are refused. On sale unless
    /// said otherwise.
    #[serde(default = "on_sale")]
    pub available: bool,
}

fn on_sale() -> bool {
    true
}

pub struct Products;

const SPEC: ResourceSpec = ResourceSpec {
    kind: "product",
    title: "Product",
    table: "products",
    fields: &[
        Field::text("name", "name"),
        Field::amount("price", "price_minor", 2),
        Field::uuid("categoryId", "category_id").filtered(),
        Field::new(
            "isDispensable",
            "is_dispensable",
            kassa_platform::resource::FieldKind::Bool,
        )
        .filtered(),
        Field::new(
            "available",
            "available",
            kassa_platform::resource::FieldKind::Bool,
        )
        .filtered(),
    ],
    // The category was deleted by a request that committed first.
    unique: &[Unique {
        constraint: "products_category",
        field: "categoryId",
        code: "unknown_category",
        detail: "No category has this id (any more).",
    }],
    not_found: "product_not_found",
    conflicts: "`unknown_category`: `categoryId` names no category (create it first under /api/categories).",
    undeletable: "",
};

#[async_trait::async_trait]
impl Resource for Products {
    type Fields = Product;
    const SPEC: &'static ResourceSpec = &SPEC;

    async fn in_write(
        tx: &mut Tx,
        _current: Option<&Stored<Product>>,
        product: Option<&Product>,
    ) -> Result<(), ApiError> {
        if let Some(category) = product.and_then(|p| p.category_id) {
            let known = sql("SELECT 1 AS one FROM categories WHERE id = $1")
                .bind(category)
                .fetch_optional(tx)
                .await?;
            if known.is_none() {
                return Err(ApiError::conflict(
                    "unknown_category",
                    "No category has this id (yet, or any more); create it under /api/categories first.",
                )
                .with_param("categoryId"));
            }
        }
        Ok(())
    }
}
