//! The payments HTTP API of seed 003: list (payments of both kinds), read, find by order, and
//! totals per status. The routes of payments recorded by hand are the resource kit's
//! (`manual.rs`).

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::State,
    response::{IntoResponse, Response},
    routing::get,
};
use kassa_contracts::json::timestamp;
use kassa_platform::{
    access::{Policy, Rule},
    auth::Access,
    auth::Role,
    cache::Cache,
    db::Db,
    http::{
        ApiError, ApiResult, PathId, found,
        openapi::{
            self, CurrencyCode, Failures, InvalidParams, ProblemResponses, SignedIn, TokenSecurity,
        },
    },
};
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    domain::{Payment, PaymentStatus},
    store,
};

/// How long a payment stays cached after it was read or changed.
const CACHE_TTL: Duration = Duration::from_secs(300);

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub cache: Arc<dyn Cache>,
}

/// Seed 003's payments: customers their own, the staff everyone's and the figures over them; its
/// clients may be let in anonymously (`seed003`), and then see only the payments no one owns.
pub const RULES: &[Rule] = &[
    Rule::get("/api/payments", Policy::CUSTOMER).opens_with("seed003"),
    Rule::get("/api/payments/stats", Policy::STAFF),
    Rule::get(
        "/api/payments/order/{orderId}",
        Policy::CUSTOMER.and(&[Role::Kiosk, Role::Service]),
    )
    .opens_with("seed003"),
    Rule::get("/api/payments/{id}", Policy::CUSTOMER).opens_with("seed003"),
];

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/payments", get(list_payments))
        .route("/api/payments/stats", get(payment_stats))
        .route("/api/payments/order/{orderId}", get(payment_by_order))
        .route("/api/payments/{id}", get(get_payment))
        .with_state(state)
}

pub fn cache_key(id: Uuid) -> String {
    format!("payment:{id}")
}

/// Caches `payment` as it is now, unless the cache already holds a later state of it. Call it
/// after the transaction that created or changed the payment commits, with the payment as that
/// transaction wrote it (its `updated_at` as stored); never fails.
pub async fn cache_payment(cache: &dyn Cache, payment: &Payment) {
    let body = match serde_json::to_vec(&PaymentView::from(payment)) {
        Ok(body) => body,
        Err(e) => {
            tracing::warn!(payment_id = %payment.id, error = %e, "payment not cached");
            return;
        }
    };
    kassa_platform::cache::put_changed(
        cache,
        &cache_key(payment.id),
        cache_version(payment),
        body,
        CACHE_TTL,
    )
    .await;
}

/// Caches `payments` (see [`cache_payment`]) in a task of their own, so the loop that changed
/// them goes on while Redis answers, or does not.
pub fn cache_payments_beside(cache: Arc<dyn Cache>, payments: Vec<Payment>) {
    tokio::spawn(async move {
        futures_util::future::join_all(payments.iter().map(|p| cache_payment(cache.as_ref(), p)))
            .await;
    });
}

/// Writes `payment`'s view unless a later state is cached; false when the cache did not answer.
async fn cache_view(cache: &dyn Cache, payment: &Payment, body: Vec<u8>) -> bool {
    cache
        .put_if_newer(
            &cache_key(payment.id),
            cache_version(payment),
            body,
            CACHE_TTL,
        )
        .await
}

/// The version of a payment's cache entry: its status's rank in the state machine, then its
/// `updated_at` in microseconds. Every change moves a payment to a status of a higher rank, so
/// a later state always has the higher version even when the clocks of two replicas disagree;
/// `updated_at` only orders writes of the same status.
fn cache_version(payment: &Payment) -> i64 {
    let rank: i64 = match payment.status {
        PaymentStatus::Processing | PaymentStatus::Pending => 0,
        PaymentStatus::Approved
        | PaymentStatus::Declined
        | PaymentStatus::Failed
        | PaymentStatus::Cancelled => 1,
        PaymentStatus::Refunded => 2,
    };
    // 56 bits of microseconds since 1970 last until the year 4253.
    let micros = payment
        .updated_at
        .timestamp_micros()
        .clamp(0, (1 << 56) - 1);
    (rank << 56) | micros
}

/// A payment as the API shows it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentView {
    id: Uuid,
    order_id: Uuid,
    #[schema(schema_with = openapi::amount_output)]
    amount: Box<RawValue>,
    #[schema(value_type = CurrencyCode)]
    currency: String,
    #[schema(schema_with = PaymentStatus::schema)]
    status: &'static str,
    /// Why the payment was declined or failed, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// The provider's id for the charge, once approved (a Stripe PaymentIntent: `pi_…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    provider_reference: Option<String>,
    /// How it is paid in person (seed 002): `Cash` or `QRIS`; absent for a payment charged
    /// through the provider.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::domain::InPerson::schema, nullable = false)]
    method: Option<&'static str>,
    #[serde(serialize_with = "timestamp")]
    #[schema(value_type = String, format = DateTime)]
    created_at: chrono::DateTime<chrono::Utc>,
    #[serde(serialize_with = "timestamp")]
    #[schema(value_type = String, format = DateTime)]
    updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<&Payment> for PaymentView {
    fn from(p: &Payment) -> Self {
        PaymentView {
            id: p.id,
            order_id: p.order_id,
            amount: p.amount.to_json_number(),
            currency: p.amount.currency().code().to_owned(),
            status: p.status.as_str(),
            reason: p.reason.clone(),
            provider_reference: p.provider_reference.clone(),
            method: p.method.map(|m| m.as_str()),
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

impl From<Payment> for PaymentView {
    fn from(p: Payment) -> Self {
        PaymentView::from(&p)
    }
}

/// A payment of either kind, as the list of all payments shows it: `kind` says which, and so
/// which of the optional fields it has.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListedPayment {
    id: Uuid,
    /// `checkout`: charged for an order (read it at `/api/payments/{id}`); `manual`: recorded
    /// by hand for a member (read it at `/api/payments/manual/{id}`).
    #[schema(schema_with = kinds)]
    kind: String,
    /// A checkout payment's order.
    #[serde(skip_serializing_if = "Option::is_none")]
    order_id: Option<Uuid>,
    /// A manual payment's member.
    #[serde(skip_serializing_if = "Option::is_none")]
    member_id: Option<Uuid>,
    #[schema(schema_with = openapi::amount_output)]
    amount: Box<RawValue>,
    #[schema(value_type = CurrencyCode)]
    currency: String,
    /// A checkout payment's status (`PROCESSING`, …) or a manual one's (`Pending`, …).
    #[schema(schema_with = statuses)]
    status: String,
    /// Why a checkout payment was declined or failed, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// How the payment was paid: in person (`Cash`, `QRIS`) for a checkout paid at the kiosk,
    /// or as recorded by hand for a manual one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = methods)]
    payment_method: Option<String>,
    /// When a manual payment was completed.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::manual::write_time"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    paid_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(serialize_with = "timestamp")]
    #[schema(value_type = String, format = DateTime)]
    created_at: chrono::DateTime<chrono::Utc>,
    #[serde(serialize_with = "timestamp")]
    #[schema(value_type = String, format = DateTime)]
    updated_at: chrono::DateTime<chrono::Utc>,
}

fn kinds() -> utoipa::openapi::schema::Schema {
    openapi::text_enum(["checkout", "manual"])
}

fn statuses() -> utoipa::openapi::schema::Schema {
    openapi::text_enum(
        PaymentStatus::ALL
            .iter()
            .map(|s| s.as_str())
            .chain(crate::manual::Status::ALL.iter().map(|s| s.as_str())),
    )
}

/// Both kinds' ways of paying: a checkout's in person, a manual payment's as recorded.
fn methods() -> utoipa::openapi::schema::Schema {
    let mut names: Vec<&str> = crate::domain::InPerson::ALL
        .iter()
        .map(|m| m.as_str())
        .collect();
    for m in crate::manual::PaymentMethod::ALL {
        let name = m.as_str();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    openapi::text_enum(names)
}

impl From<store::Listed> for ListedPayment {
    fn from(p: store::Listed) -> Self {
        ListedPayment {
            id: p.id,
            kind: p.kind,
            order_id: p.order_id,
            member_id: p.member_id,
            amount: p.amount.to_json_number(),
            currency: p.amount.currency().code().to_owned(),
            status: p.status,
            reason: p.reason,
            payment_method: p.payment_method,
            paid_at: p.paid_at,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// Count and sum of the payments in one status (and currency).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusStats {
    #[schema(schema_with = PaymentStatus::schema)]
    status: &'static str,
    #[schema(minimum = 1)]
    count: i64,
    #[schema(schema_with = openapi::amount_output)]
    total_amount: Box<RawValue>,
    #[schema(value_type = CurrencyCode)]
    currency: String,
}

/// Payment totals: one entry per status and currency that has payments.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentStats {
    by_status: Vec<StatusStats>,
}

kassa_platform::list_endpoint! {
    /// List payments of both kinds (checkout and manual), newest first; a signed-in customer's
    /// list holds the payments of their own orders only.
    fn list_payments(path = "/api/payments", tag = "payments", description = "One page of payments.",
        state = AppState, view = ListedPayment, page = store::page_all, owned_by_caller)
}

/// Read one payment, from the cache when it holds it.
#[utoipa::path(get, path = "/api/payments/{id}", tag = "payments",
    params(("id" = inline(openapi::Id), Path, description = "The payment's id.")),
    security((), ("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, body = PaymentView, description = "The payment.", links(
            ("GetPaymentOfOrder" = (operation_id = "payment_by_order", parameters(("orderId" = "$response.body#/orderId")))),
            ("GetOrder" = (operation_id = "get_order", parameters(("id" = "$response.body#/orderId")))),
        )),
        (status = 404, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "No payment has this id, or none of the signed-in customer's (`payment_not_found`)."),
        SignedIn,
        InvalidParams,
    ))]
pub async fn get_payment(
    State(state): State<AppState>,
    access: Access,
    PathId(id): PathId,
) -> ApiResult<Response> {
    if access.sees()?.is_some() {
        // A customer's read checks the owner, which the cached view does not show.
        let payment = match store::find(&state.db, id).await? {
            Some(payment) if access.may_see(payment.user_id)? => payment,
            _ => return Err(payment_not_found()),
        };
        return Ok(Json(PaymentView::from(&payment)).into_response());
    }
    let key = cache_key(id);
    if let Some(bytes) = state.cache.get(&key).await {
        return Ok((
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            bytes,
        )
            .into_response());
    }
    let payment = store::find(&state.db, id)
        .await?
        .ok_or_else(payment_not_found)?;
    let body =
        serde_json::to_vec(&PaymentView::from(&payment)).map_err(|_| ApiError::internal())?;
    // A change committed since our read has a higher version: this older one is not stored.
    // Best effort: a read that cannot cache is served all the same.
    let _cached = cache_view(state.cache.as_ref(), &payment, body.clone()).await;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// The payment of an order.
#[utoipa::path(get, path = "/api/payments/order/{orderId}", tag = "payments",
    params(("orderId" = inline(openapi::Id), Path, description = "The id of the order the payment is for.")),
    security((), ("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, body = PaymentView, description = "The order's payment.", links(
            ("GetPayment" = (operation_id = "get_payment", parameters(("id" = "$response.body#/id")))),
        )),
        (status = 404, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "The order has no payment, or not yet: payments are created \
            asynchronously after the order; or it is not the signed-in customer's \
            (`payment_not_found`)."),
        SignedIn,
        InvalidParams,
    ))]
pub async fn payment_by_order(
    State(state): State<AppState>,
    access: Access,
    PathId(order_id): PathId,
) -> ApiResult<Json<PaymentView>> {
    access.sees()?;
    let payment = match store::find_by_order(&state.db, order_id).await? {
        Some(payment) if access.may_see(payment.user_id)? => Some(payment),
        _ => None,
    };
    found(payment, || {
        ApiError::not_found("payment_not_found", "This order has no payment (yet).")
    })
}

/// Count and total amount of checkout payments per status (seed 003's report; payments
/// recorded by hand are not charged and are not counted here).
#[utoipa::path(get, path = "/api/payments/stats", tag = "payments", security((), ("bearer" = []), ("cookie" = [])),
    responses((status = 200, body = PaymentStats, description = "Count and total per status and currency."),
        (status = 403, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "The token is a customer's: only an admin sees figures over every customer (`admin_only`)."),
        SignedIn, Failures))]
pub async fn payment_stats(
    State(state): State<AppState>,
    access: Access,
) -> ApiResult<Json<PaymentStats>> {
    access.sees_everything()?;
    let totals = store::totals_by_status(&state.db).await?;
    let by_status = totals
        .into_iter()
        .map(|t| StatusStats {
            status: t.status.as_str(),
            count: t.count,
            total_amount: kassa_contracts::money::raw_number(t.total_minor, t.currency.exponent()),
            currency: t.currency.code().to_owned(),
        })
        .collect();
    Ok(Json(PaymentStats { by_status }))
}

fn payment_not_found() -> ApiError {
    ApiError::not_found("payment_not_found", "No payment has this id.")
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "kassa payments",
        description = "Payments of seed 003: PROCESSING, then APPROVED, DECLINED or FAILED; CANCELLED or REFUNDED with their order. \
            And seed 000's, recorded by hand for a gym's members: Pending, then Completed, Failed or Cancelled; Completed may be Refunded."
    ),
    paths(list_payments, get_payment, payment_by_order, payment_stats),
    components(schemas(PaymentView, ListedPayment, PaymentStats, StatusStats)),
    modifiers(&ProblemResponses, &TokenSecurity)
)]
pub struct PaymentsApi;

#[cfg(test)]
mod tests {
    #[test]
    fn a_listed_payment_method_may_be_any_way_either_kind_is_paid() {
        let schema = serde_json::to_value(super::methods()).unwrap();
        let names: Vec<String> = serde_json::from_value(schema["enum"].clone()).unwrap();
        for m in crate::domain::InPerson::ALL {
            assert!(names.iter().any(|n| n == m.as_str()), "{m:?}");
        }
        for m in crate::manual::PaymentMethod::ALL {
            // As the manual payment's JSON writes it.
            assert_eq!(
                serde_json::to_value(m).unwrap(),
                serde_json::json!(m.as_str())
            );
            assert!(names.iter().any(|n| n == m.as_str()), "{m:?}");
        }
    }
}
