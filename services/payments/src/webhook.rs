//! Stripe's webhook (`POST /api/payments/webhooks/stripe`): outcomes Stripe reports later than
//! its answer to the charge (a PaymentIntent that was still processing). Each request is checked
//! against `Stripe-Signature` (HMAC-SHA256 with the webhook's signing secret, at most five
//! minutes old) before anything is read from it. A PaymentIntent's outcome settles the payment
//! its metadata names if that payment is still PROCESSING and the PaymentIntent is the one
//! charged for it (the id kept when Stripe answered `processing`, the same amount in the same
//! currency), exactly as a synchronous answer would (status, event, cache); anything else is
//! acknowledged and changes nothing, so Stripe's retries and duplicates are harmless. An outcome
//! for a payment whose PaymentIntent id is not known yet is answered 409, so that Stripe sends it
//! again later.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use kassa_contracts::EventContext;
use kassa_platform::{
    access::{Policy, Rule},
    cache::Cache,
    db::Db,
    http::{ApiError, ApiResult, openapi},
    stripe::{SIGNATURE_TOLERANCE, signature_holds},
};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    domain::{ChargeOutcome, PaymentStatus},
    processor,
    refunds::Refunds,
    store,
};

pub const PATH: &str = "/api/payments/webhooks/stripe";

#[derive(Clone)]
pub struct Webhook {
    pub db: Db,
    pub cache: Arc<dyn Cache>,
    pub refunds: Refunds,
    /// The webhook's signing secret (`whsec_…`); none: every request is refused.
    pub secret: Option<String>,
}

/// Stripe sends no credential of kassa's: the request's signature is its proof.
pub const RULES: &[Rule] = &[Rule::post(PATH, Policy::PUBLIC)];

pub fn router(webhook: Webhook) -> Router {
    Router::new()
        .route(PATH, post(stripe_event))
        .with_state(webhook)
}

/// What was done with an event.
#[derive(Serialize, ToSchema)]
pub struct Received {
    /// Always `true`: the event is acknowledged, and Stripe need not send it again.
    received: bool,
    /// Whether it settled a payment (`false`: not an outcome, or its payment was settled
    /// already).
    applied: bool,
}

fn unauthorized(code: &'static str, detail: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, detail).with_param("Stripe-Signature")
}

/// Why `intent` is not the charge of `payment`: another PaymentIntent than the one recorded for
/// it, or another amount or currency.
fn mismatch(intent: &Value, payment: &crate::domain::Payment) -> Option<&'static str> {
    let id = intent["id"].as_str().unwrap_or_default();
    if id.is_empty() {
        return Some("the event names no PaymentIntent");
    }
    if payment
        .provider_reference
        .as_deref()
        .is_some_and(|kept| kept != id)
    {
        return Some("another PaymentIntent than the one charged for the payment");
    }
    if intent["amount"].as_i64() != Some(payment.amount.minor()) {
        return Some("another amount than the payment's");
    }
    let currency = payment.amount.currency();
    if !intent["currency"]
        .as_str()
        .is_some_and(|c| c.eq_ignore_ascii_case(currency.code()))
    {
        return Some("another currency than the payment's");
    }
    None
}

/// An event from Stripe.
#[utoipa::path(post, path = "/api/payments/webhooks/stripe", tag = "payments",
    request_body(content = Object, content_type = "application/json",
        description = "A Stripe Event, exactly as Stripe signed it."),
    security(("stripe_signature" = [])),
    responses(
        (status = 200, body = Received, description = "Acknowledged."),
        (status = 400, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "A signed body that is not a Stripe Event (`invalid_event`)."),
        (status = 401, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "No `Stripe-Signature`, one that does not sign this body with the webhook's secret or is more than five minutes old (`invalid_signature`), or no webhook secret configured (`webhook_not_configured`)."),
        (status = 409, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "An outcome for a payment whose PaymentIntent is not recorded yet (`charge_not_recorded`): Stripe sends it again later."),
        (status = 413, body = openapi::Problem, content_type = openapi::PROBLEM_JSON, description = "The body is larger than this service accepts (`body_too_large`)."),
        openapi::Failures,
    ))]
pub async fn stripe_event(
    State(webhook): State<Webhook>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Received>> {
    let Some(secret) = &webhook.secret else {
        return Err(unauthorized(
            "webhook_not_configured",
            "This installation has no Stripe webhook secret (KASSA_STRIPE_WEBHOOK_SECRET).",
        ));
    };
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let now = chrono::Utc::now().timestamp();
    if !signature_holds(signature, &body, secret, now, SIGNATURE_TOLERANCE) {
        return Err(unauthorized(
            "invalid_signature",
            "Stripe-Signature does not sign this body with the webhook's secret, or is older \
             than five minutes.",
        ));
    }
    let event: Value = serde_json::from_slice(&body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_event",
            "The body is not a Stripe Event.",
        )
    })?;
    let intent = &event["data"]["object"];
    let outcome = match event["type"].as_str() {
        Some("payment_intent.succeeded") => ChargeOutcome::Approved {
            reference: intent["id"].as_str().unwrap_or_default().to_owned(),
        },
        Some("payment_intent.payment_failed") => ChargeOutcome::Declined {
            reason: intent["last_payment_error"]["message"]
                .as_str()
                .unwrap_or("the card was declined")
                .to_owned(),
        },
        _ => {
            return Ok(Json(Received {
                received: true,
                applied: false,
            }));
        }
    };
    let payment_id = intent["metadata"]["paymentId"]
        .as_str()
        .and_then(|id| Uuid::parse_str(id).ok());
    let Some(payment) = (match payment_id {
        Some(id) => store::find(&webhook.db, id).await?,
        None => None,
    }) else {
        tracing::info!(event = %event["id"], "Stripe event for no payment of this installation");
        return Ok(Json(Received {
            received: true,
            applied: false,
        }));
    };
    // A charge approved after its order was cancelled took money the payment no longer takes:
    // it is settled as the charge's own answer would have been, which asks for it to be voided.
    let late_approval = payment.status == PaymentStatus::Cancelled
        && matches!(outcome, ChargeOutcome::Approved { .. });
    if payment.status != PaymentStatus::Processing && !late_approval {
        return Ok(Json(Received {
            received: true,
            applied: false,
        }));
    }
    if let Some(mismatch) = mismatch(intent, &payment) {
        tracing::warn!(event = %event["id"], payment_id = %payment.id, mismatch, "Stripe event not applied: it is not about this payment's charge");
        return Ok(Json(Received {
            received: true,
            applied: false,
        }));
    }
    if payment.provider_reference.is_none() {
        // The charge's answer (with the PaymentIntent's id) has not been recorded yet: Stripe
        // retries a webhook it was not answered 2xx, by when it has.
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "charge_not_recorded",
            "The payment's PaymentIntent is not recorded yet; send the event again later.",
        ));
    }
    let mut payment = payment;
    if late_approval {
        // As it was when the charge went out.
        payment.status = PaymentStatus::Processing;
    }
    let context = EventContext::new(format!(
        "stripe:{}",
        event["id"].as_str().unwrap_or_default()
    ));
    let applied = processor::record(
        &webhook.db,
        &webhook.cache,
        &webhook.refunds,
        payment,
        outcome,
        context,
    )
    .await?;
    Ok(Json(Received {
        received: true,
        applied,
    }))
}
