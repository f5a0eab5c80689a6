//! Orders for products of the catalog (seed 002): each line's price comes from the catalog,
//! never from the client, read over HTTP and kept five minutes in the cache under
//! `product:price:{productId}` as the seed shows; the lines' stock is held in inventory before
//! the order is stored, all or none. Either service being down is a 503 the client retries:
//! nothing is stored, and a hold made for an order that was then not stored expires.

use std::{sync::Arc, time::Duration};

use axum::http::StatusCode;
use kassa_contracts::{Currency, Money, events::OrderItem};
use kassa_platform::{
    cache::Cache,
    http::ApiError,
    peer::{PeerClient, PeerError},
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

/// How long a product's price is kept in the cache.
pub const PRICE_TTL: Duration = Duration::from_secs(300);

/// What an order needs to know of a product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductFacts {
    pub name: String,
    /// Hundredths of the shop's currency.
    pub price_hundredths: i64,
    pub is_dispensable: bool,
    pub available: bool,
}

/// One line of an order as stored: the product as it was priced when the order was placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub product_id: Uuid,
    pub name: String,
    pub unit_price: Money,
    pub quantity: i64,
    pub is_dispensable: bool,
}

impl Line {
    /// The line as `order.created` carries it.
    pub fn ordered(&self) -> kassa_contracts::events::OrderedLine {
        kassa_contracts::events::OrderedLine {
            product_id: self.product_id,
            name: self.name.clone(),
            quantity: self.quantity,
            unit_price_minor: self.unit_price.minor(),
            is_dispensable: self.is_dispensable,
        }
    }

    pub fn item(&self) -> OrderItem {
        OrderItem {
            product_id: self.product_id,
            quantity: self.quantity,
        }
    }
}

fn unavailable(e: PeerError) -> ApiError {
    ApiError::unavailable(format!("{e}; the order was not placed, try again shortly."))
}

/// Reads products from the catalog, through the cache.
#[derive(Clone)]
pub struct Catalog {
    pub client: Arc<PeerClient>,
    pub cache: Arc<dyn Cache>,
}

/// Where what the catalog said of product `id` is cached, as the seed names it.
pub fn price_key(id: Uuid) -> String {
    format!("product:price:{id}")
}

impl Catalog {
    /// The product `id`, or a 422 naming `field` when the catalog has none.
    pub async fn product(&self, id: Uuid, field: &str) -> Result<ProductFacts, ApiError> {
        if let Some(bytes) = self.cache.get(&price_key(id)).await
            && let Ok(facts) = serde_json::from_slice::<ProductFacts>(&bytes)
        {
            return Ok(facts);
        }
        let answer = self
            .client
            .get(&format!("/api/products/{id}"), None)
            .await
            .map_err(unavailable)?;
        if answer.status == StatusCode::NOT_FOUND {
            return Err(ApiError::unprocessable(
                "unknown_product",
                format!("No product of the catalog has the id {id}."),
            )
            .with_param(field));
        }
        if !answer.status.is_success() {
            tracing::warn!(status = %answer.status, "the catalog answered a product read unexpectedly");
            return Err(ApiError::unavailable(
                "The catalog did not answer as expected; try again shortly.",
            ));
        }
        let record: serde_json::Value =
            serde_json::from_slice(&answer.body).map_err(|_| ApiError::internal())?;
        let price = kassa_contracts::money::parse_minor(&record["price"].to_string(), 2)
            .map_err(|_| ApiError::internal())?;
        let facts = ProductFacts {
            name: record["name"].as_str().unwrap_or_default().to_owned(),
            price_hundredths: price,
            is_dispensable: record["isDispensable"].as_bool().unwrap_or(false),
            available: record["available"].as_bool().unwrap_or(false),
        };
        if let Ok(bytes) = serde_json::to_vec(&facts) {
            self.cache.set(&price_key(id), bytes, PRICE_TTL).await;
        }
        Ok(facts)
    }
}

/// A price in hundredths as an amount of `currency`; a 422 when the currency cannot hold it
/// exactly (a price of 1.50 in a currency without minor units).
fn in_currency(hundredths: i64, currency: Currency, field: &str) -> Result<Money, ApiError> {
    let exponent = currency.exponent();
    let minor = match exponent {
        2 => Some(hundredths),
        0 | 1 => {
            let div = 10i64.pow(2 - u32::from(exponent));
            (hundredths % div == 0).then(|| hundredths / div)
        }
        _ => hundredths.checked_mul(10i64.pow(u32::from(exponent) - 2)),
    };
    minor
        .and_then(|m| Money::from_minor(m, currency).ok())
        .ok_or_else(|| {
            ApiError::unprocessable(
                "price_not_representable",
                format!(
                    "The catalog's price is not an exact amount of {}.",
                    currency.code()
                ),
            )
            .with_param(field)
        })
}

/// One line a client asks for.
pub struct Wanted {
    pub product_id: Uuid,
    pub quantity: i64,
}

/// Prices `wanted` from the catalog in `currency`: the lines, and their total. A product not on
/// sale is a 409 naming it.
pub async fn price(
    catalog: &Catalog,
    wanted: &[Wanted],
    currency: Currency,
) -> Result<(Vec<Line>, Money), ApiError> {
    let mut lines = Vec::with_capacity(wanted.len());
    let mut total_minor: i64 = 0;
    for (i, w) in wanted.iter().enumerate() {
        let field = format!("items[{i}].productId");
        let facts = catalog.product(w.product_id, &field).await?;
        if !facts.available {
            return Err(ApiError::conflict(
                "product_unavailable",
                format!(
                    "Product {} ({}) is not on sale now.",
                    w.product_id, facts.name
                ),
            )
            .with_param(&field));
        }
        let unit_price = in_currency(facts.price_hundredths, currency, &field)?;
        total_minor = unit_price
            .minor()
            .checked_mul(w.quantity)
            .and_then(|line| total_minor.checked_add(line))
            .ok_or_else(too_much)?;
        lines.push(Line {
            product_id: w.product_id,
            name: facts.name,
            unit_price,
            quantity: w.quantity,
            is_dispensable: facts.is_dispensable,
        });
    }
    let total = Money::from_minor(total_minor, currency).map_err(|_| too_much())?;
    Ok((lines, total))
}

fn too_much() -> ApiError {
    ApiError::unprocessable(
        "amount_too_large",
        "The order's total is above what kassa takes in one payment.",
    )
    .with_param("items")
}

/// What the order is for, in words, for receipts: `2 × Cola, 1 × Chips`.
pub fn summary(lines: &[Line]) -> String {
    let text = lines
        .iter()
        .map(|l| format!("{} × {}", l.quantity, l.name))
        .collect::<Vec<_>>()
        .join(", ");
    text.chars().take(500).collect()
}

/// Holds stock in inventory.
#[derive(Clone)]
pub struct Inventory {
    pub client: Arc<PeerClient>,
}

impl Inventory {
    /// Holds `lines` for `order_id`: all or none. Short stock is the inventory's 409, which names
    /// the product.
    pub async fn reserve(&self, order_id: Uuid, lines: &[Line]) -> Result<(), ApiError> {
        let items: Vec<OrderItem> = lines.iter().map(Line::item).collect();
        let body = json!({"orderId": order_id, "items": items});
        let answer = self
            .client
            .post_json("/api/reservations", &body, None)
            .await
            .map_err(unavailable)?;
        match answer.status {
            StatusCode::CREATED | StatusCode::OK => Ok(()),
            StatusCode::CONFLICT => {
                let problem: serde_json::Value =
                    serde_json::from_slice(&answer.body).unwrap_or_default();
                Err(ApiError::conflict(
                    "insufficient_stock",
                    problem["detail"]
                        .as_str()
                        .unwrap_or("A product has fewer units available than ordered.")
                        .to_owned(),
                )
                .with_param("items"))
            }
            other => {
                tracing::warn!(status = %other, body = %String::from_utf8_lossy(&answer.body),
                    "inventory refused a reservation unexpectedly");
                Err(ApiError::unavailable(
                    "The inventory did not hold the stock; try again shortly.",
                ))
            }
        }
    }

    /// Gives back what `order_id` holds (it was not stored); if this fails too, the hold
    /// expires on its own.
    pub async fn release(&self, order_id: Uuid) {
        if let Err(e) = self
            .client
            .delete(&format!("/api/reservations/{order_id}"), None)
            .await
        {
            tracing::warn!(%order_id, error = %e, "a hold for an order not placed is left to expire");
        }
    }
}
