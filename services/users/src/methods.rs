//! Saved cards ("payment methods"): added by their owner through seed 004's route, listed and
//! removed through kassa's, and looked up by the payments service (and only by it) when it
//! charges an order.
//!
//! A card number is checked, exchanged for the provider's token and dropped: what is stored,
//! answered and logged is the token, brand, last four digits, expiry and cardholder's name.

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{delete, get, post},
};
use chrono::{DateTime, Utc};
use kassa_contracts::json::timestamp;
use kassa_platform::{
    access::{Policy, Rule},
    auth::{Caller, Role},
    db::{DbError, Row, sql},
    http::{
        ApiError, ApiJson, ApiResult, PathId,
        openapi::{self, InvalidBody, InvalidParams, RoleRequired, SignedIn},
        parse_uuid,
    },
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    Users,
    accounts::{Answer, answer, signed_in},
    card::{CardNumber, Expiry, Owner, TokenizeError},
};

/// The most cards one account keeps.
pub const MAX_PER_USER: i64 = 20;

pub fn seed_routes(prefix: &str) -> Router<Users> {
    Router::new()
        .route(
            &format!("{prefix}/payment-methods/add"),
            post(add_payment_method),
        )
        .route(
            &format!("{prefix}/payment-methods/get/{{userId}}"),
            get(payment_method_for_payments),
        )
}

/// A person saves, lists and removes their own cards; the payments service looks up the card
/// of the person it charges.
pub const RULES: &[Rule] = &[
    Rule::post("/payment-methods/add", Policy::CUSTOMER),
    Rule::post("/api/payment-methods/add", Policy::CUSTOMER),
    Rule::get("/payment-methods/get/{userId}", Policy::SERVICE),
    Rule::get("/api/payment-methods/get/{userId}", Policy::SERVICE),
    Rule::get("/api/users/me/payment-methods", Policy::CUSTOMER),
    Rule::delete("/api/users/me/payment-methods/{id}", Policy::CUSTOMER),
];

pub fn routes() -> Router<Users> {
    Router::new()
        .route("/api/users/me/payment-methods", get(list_payment_methods))
        .route(
            "/api/users/me/payment-methods/{id}",
            delete(remove_payment_method),
        )
}

/// `POST /payment-methods/add` body, as seed 004's clients send it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCard {
    /// The card's 13 to 19 digits (with a valid check digit). Never stored.
    #[schema(pattern = r"^[0-9]{13,19}$", example = "4242424242424242")]
    card_number: String,
    /// `MM/YY`, this month or later.
    #[schema(pattern = r"^(0[1-9]|1[0-2])/[0-9]{2}$", example = "12/30")]
    expiry_date: String,
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    cardholder_name: String,
    /// The code on the card's back, passed to the provider once and never kept (seed 004 has
    /// no such field; a provider may ask for it).
    #[serde(default, deserialize_with = "kassa_platform::http::not_null")]
    #[schema(nullable = false, pattern = r"^[0-9]{3,4}$", example = "123")]
    cvc: Option<String>,
}

/// A saved card as its owner sees it.
#[derive(Serialize, ToSchema)]
pub struct SavedCard {
    id: Uuid,
    /// The card network: visa, mastercard, amex, discover, jcb, diners, unionpay or unknown.
    brand: String,
    /// The last four digits of its number.
    last4: String,
    /// `MM/YY`.
    expiry_date: String,
    cardholder_name: String,
    #[serde(serialize_with = "timestamp")]
    #[schema(value_type = String, format = DateTime)]
    created_at: DateTime<Utc>,
}

/// A saved card as the payments service charges it: also the provider's token.
#[derive(Serialize, ToSchema)]
pub struct ChargeableCard {
    #[serde(flatten)]
    card: SavedCard,
    /// Which provider holds the card (`simulated`, `stripe`).
    provider: String,
    /// The provider's id for it (a Stripe PaymentMethod id).
    provider_token: String,
    /// The provider's id for its owner, when it keeps one (a Stripe Customer id).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    provider_customer: Option<String>,
}

/// The answer to `GET /payment-methods/get/{userId}`: seed 004's shape, with the owner's
/// address beside the card.
#[derive(Serialize, ToSchema)]
pub struct CardForPayments {
    /// Always `true`.
    success: bool,
    data: ChargeableCard,
    /// The owner's email address, for the receipt.
    email: String,
    message: &'static str,
}

/// The user's saved cards.
#[derive(Serialize, ToSchema)]
pub struct SavedCards {
    /// Oldest first; the first is the one orders are charged to.
    data: Vec<SavedCard>,
}

const COLUMNS: &str = "id, provider, provider_token, provider_customer, brand, last4, \
                       exp_month, exp_year, cardholder_name, created_at";

fn card_from(row: &Row) -> Result<ChargeableCard, DbError> {
    let month: i64 = row.get("exp_month")?;
    let year: i64 = row.get("exp_year")?;
    Ok(ChargeableCard {
        card: SavedCard {
            id: row.get("id")?,
            brand: row.get("brand")?,
            last4: row.get("last4")?,
            expiry_date: format!("{month:02}/{:02}", year % 100),
            cardholder_name: row.get("cardholder_name")?,
            created_at: row.get("created_at")?,
        },
        provider: row.get("provider")?,
        provider_token: row.get("provider_token")?,
        provider_customer: row.get("provider_customer")?,
    })
}

async fn cards_of(users: &Users, user_id: Uuid) -> Result<Vec<ChargeableCard>, DbError> {
    let rows = kassa_platform::db::sql_assembled(format!(
        "SELECT {COLUMNS} FROM payment_methods WHERE user_id = $1 ORDER BY created_at, id"
    ))
    .bind(user_id)
    .fetch_all(&users.db)
    .await?;
    rows.iter().map(card_from).collect()
}

fn card_exists() -> ApiError {
    ApiError::conflict(
        "card_exists",
        "Card already exists: this account has saved this card.",
    )
}

/// Save a card for the signed-in user.
#[utoipa::path(post, path = "/payment-methods/add", tag = "users", request_body = NewCard,
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 201, body = inline(Answer<SavedCard>), description = "The card is saved: its provider token, brand, last four digits and expiry, never its number."),
        (status = 409, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "This account has saved this card already (`card_exists`), or has saved as many cards as it may (`too_many_cards`)."),
        (status = 422, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "The number has the card's shape but not a valid check digit (`invalid_card_number`), the card has expired (`card_expired`), or the provider refused it (`card_refused`)."),
        SignedIn, InvalidBody,
    ))]
pub async fn add_payment_method(
    State(users): State<Users>,
    caller: Caller,
    ApiJson(body): ApiJson<NewCard>,
) -> ApiResult<Response> {
    let claims = caller.known()?;
    let number = CardNumber::parse("card_number", &body.card_number)?;
    let expiry = Expiry::parse("expiry_date", &body.expiry_date, Utc::now().date_naive())?;
    let mut holder = body.cardholder_name;
    kassa_platform::validate::text("cardholder_name", &mut holder, 100)?;
    let user = signed_in(&users, claims).await?;
    let (brand, last4) = (number.brand(), number.last4().to_owned());
    let saved = sql("SELECT COUNT(*) AS cards, \
         COALESCE(SUM(CASE WHEN brand = $2 AND last4 = $3 AND exp_month = $4 AND exp_year = $5 \
         THEN 1 ELSE 0 END), 0) AS same FROM payment_methods WHERE user_id = $1")
    .bind(user.id)
    .bind(brand)
    .bind(last4.as_str())
    .bind(i64::from(expiry.month))
    .bind(i64::from(expiry.year))
    .fetch_one(&users.db)
    .await?;
    if saved.get::<i64>("same")? > 0 {
        return Err(card_exists());
    }
    if saved.get::<i64>("cards")? >= MAX_PER_USER {
        return Err(ApiError::conflict(
            "too_many_cards",
            format!("An account keeps at most {MAX_PER_USER} cards; remove one first."),
        ));
    }
    let cvc = body.cvc;
    if cvc
        .as_deref()
        .is_some_and(|c| !(3..=4).contains(&c.len()) || !c.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(ApiError::invalid(
            "cvc",
            "invalid_cvc",
            "`cvc` must be the 3 or 4 digits on the card.",
        ));
    }
    let customer: Option<String> = sql("SELECT provider_customer FROM users WHERE id = $1")
        .bind(user.id)
        .fetch_one(&users.db)
        .await?
        .get("provider_customer")?;
    let owner = Owner {
        user_id: user.id,
        email: user.email.clone(),
        name: user.name.clone(),
        customer: customer.clone(),
    };
    let tokenized = users
        .tokenizer
        .tokenize(&number, expiry, cvc.as_deref(), &owner)
        .await
        .map_err(|e| match e {
            TokenizeError::Refused(reason) => {
                ApiError::unprocessable("card_refused", format!("The card was refused: {reason}"))
            }
            TokenizeError::Unavailable(reason) => {
                tracing::warn!(%reason, "card provider unavailable");
                ApiError::unavailable("The card provider is unreachable; try again shortly.")
            }
        })?;
    drop(number);
    drop(cvc);
    // The provider's id for the user, kept from their first card on.
    if tokenized.customer.is_some() && customer.is_none() {
        sql("UPDATE users SET provider_customer = $1 WHERE id = $2 AND provider_customer IS NULL")
            .bind(tokenized.customer.clone())
            .bind(user.id)
            .execute(&users.db)
            .await?;
    }
    let id = Uuid::now_v7();
    let now = Utc::now();
    sql(
        "INSERT INTO payment_methods (id, user_id, provider, provider_token, provider_customer, \
         brand, last4, exp_month, exp_year, cardholder_name, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(id)
    .bind(user.id)
    .bind(tokenized.provider)
    .bind(tokenized.token.as_str())
    .bind(tokenized.customer.clone())
    .bind(brand)
    .bind(last4.as_str())
    .bind(i64::from(expiry.month))
    .bind(i64::from(expiry.year))
    .bind(holder.as_str())
    .bind(now)
    .execute(&users.db)
    .await
    .map_err(|e| match &e {
        // The same card added twice at once: the constraint decides.
        DbError::Constraint(name) if name.contains("payment_methods") => card_exists(),
        _ => e.into(),
    })?;
    tracing::info!(user_id = %user.id, payment_method = %id, brand, "card saved");
    let card = SavedCard {
        id,
        brand: brand.to_owned(),
        last4,
        expiry_date: expiry.text(),
        cardholder_name: holder,
        created_at: now,
    };
    Ok((
        StatusCode::CREATED,
        Json(answer(card, "Payment method added successfully")),
    )
        .into_response())
}

/// The card an order of this user is charged to (the first saved), with the user's address:
/// for the payments service only (a token with the `service` role).
#[utoipa::path(get, path = "/payment-methods/get/{userId}", tag = "users",
    params(("userId" = inline(openapi::Id), Path, description = "The user's id.")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, body = CardForPayments, description = "The user's first saved card and email address."),
        (status = 404, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "No user has this id (`user_not_found`), or the user has saved no card (`payment_method_not_found`)."),
        RoleRequired, InvalidParams,
    ))]
pub async fn payment_method_for_payments(
    State(users): State<Users>,
    caller: Caller,
    axum::extract::Path(user_id): axum::extract::Path<String>,
) -> ApiResult<Json<CardForPayments>> {
    let claims = caller.known()?;
    if claims.role != Role::Service {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Saved cards are looked up by kassa's payments service only.",
        ));
    }
    let user_id = parse_uuid("userId", &user_id)?;
    let user = crate::accounts::find(&users, user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("user_not_found", "User not found."))?;
    let card = cards_of(&users, user_id)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| {
            ApiError::not_found("payment_method_not_found", "No payment method found.")
        })?;
    Ok(Json(CardForPayments {
        success: true,
        data: card,
        email: user.email,
        message: "Payment method found",
    }))
}

/// The signed-in user's saved cards.
#[utoipa::path(get, path = "/api/users/me/payment-methods", tag = "users",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, body = SavedCards, description = "Every card the user saved, oldest first."),
        SignedIn, InvalidParams,
    ))]
pub async fn list_payment_methods(
    State(users): State<Users>,
    caller: Caller,
) -> ApiResult<Json<SavedCards>> {
    let claims = caller.known()?;
    let user = signed_in(&users, claims).await?;
    let data = cards_of(&users, user.id)
        .await?
        .into_iter()
        .map(|c| c.card)
        .collect();
    Ok(Json(SavedCards { data }))
}

/// Remove one of the signed-in user's saved cards.
#[utoipa::path(delete, path = "/api/users/me/payment-methods/{id}", tag = "users",
    params(("id" = inline(openapi::Id), Path, description = "The saved card's id.")),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "The card is removed."),
        (status = 404, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "The user has no saved card with this id (`payment_method_not_found`)."),
        SignedIn, InvalidParams,
    ))]
pub async fn remove_payment_method(
    State(users): State<Users>,
    caller: Caller,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    let claims = caller.known()?;
    let user = signed_in(&users, claims).await?;
    let removed = sql("DELETE FROM payment_methods WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user.id)
        .execute(&users.db)
        .await?;
    if removed == 0 {
        return Err(ApiError::not_found(
            "payment_method_not_found",
            "You have no saved card with this id.",
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}
