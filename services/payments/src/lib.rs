//! The payments service: charges each order through a payment provider and reports the outcome;
//! cancels or refunds the payment of a cancelled order.
//!
//! - `api.rs`: the HTTP API of seed 003
//! - `domain.rs`: payments and their state machine
//! - `provider.rs`: the provider port and the simulated gateway
//! - `processor.rs`: where a payment gets approved, declined or failed
//! - `refunds.rs`: money given back, retried until the provider confirms
//! - `store.rs`: the payments table
//! - `events.rs`: what order events do to payments
//! - `manual.rs`: payments recorded by hand, seed 000's, on the resource kit
//! - `numbered.rs`: seed 001's routes, payments by their order's number with integer statuses

pub mod api;
pub mod cards;
pub mod domain;
pub mod events;
pub mod in_person;
pub mod manual;
pub mod numbered;
pub mod processor;
pub mod provider;
pub mod qris;
pub mod refunds;
pub mod store;
pub mod stripe;
pub mod webhook;

use std::{sync::Arc, time::Duration};

use kassa_platform::{
    consumer::Inboxed,
    migrate::Migrations,
    resource::{self, Records},
    service::{BuildError, Infra, Options, Service, ServiceParts, Setting},
};
use utoipa::OpenApi;

pub use processor::ProcessorSettings;
pub use provider::{PaymentProvider, SimulatedGateway, SimulatedSettings};
pub use refunds::{RefundLoop, Refunds};

pub const NAME: &str = "payments";

pub const MIGRATIONS: Migrations = kassa_platform::migrations!(NAME, [
    1 "0001_payments",
    2 "0002_refunds",
    3 "0003_manual_payments",
    4 "0004_saved_cards",
    5 "0005_by_user",
    6 "0006_in_person",
    7 "0007_order_numbers",
]);

pub const PROVIDER_LATENCY_MS: Setting = Setting {
    name: "provider-latency-ms",
    default: "0",
    help: "Simulated payment provider latency per charge, in milliseconds",
    secret: false,
};
pub const PROVIDER_DECLINE_RATE: Setting = Setting {
    name: "provider-decline-rate",
    default: "0",
    help: "Share of otherwise approved charges the simulated provider declines (0 to 1)",
    secret: false,
};
pub const PAYMENTS_IN_FLIGHT: Setting = Setting {
    name: "payments-in-flight",
    default: "10000",
    help: "Charges waiting on the provider at once, at most",
    secret: false,
};
pub const PAYMENT_LEASE_SECS: Setting = Setting {
    name: "payment-lease-secs",
    default: "30",
    help: "Seconds a process owns a PROCESSING payment before another may take it over",
    secret: false,
};

/// The merchant QRIS codes name (seed 002's in-person payments).
pub const QRIS_MERCHANT_NAME: Setting = Setting {
    name: "qris-merchant-name",
    default: "Kassa Kiosk",
    help: "Merchant name in QRIS codes (up to 25 characters)",
    secret: false,
};
pub const QRIS_MERCHANT_CITY: Setting = Setting {
    name: "qris-merchant-city",
    default: "Jakarta",
    help: "Merchant city in QRIS codes (up to 15 characters)",
    secret: false,
};
pub const QRIS_MERCHANT_ID: Setting = Setting {
    name: "qris-merchant-id",
    default: "ID1020000000001",
    help: "National merchant id (NMID) in QRIS codes",
    secret: false,
};
pub const QRIS_COUNTRY: Setting = Setting {
    name: "qris-country",
    default: "ID",
    help: "Merchant country in QRIS codes (ISO 3166-1 alpha-2)",
    secret: false,
};
pub const QRIS_CATEGORY: Setting = Setting {
    name: "qris-category",
    default: "5814",
    help: "Merchant category code in QRIS codes (ISO 18245)",
    secret: false,
};

pub static SERVICE: Service = Service {
    name: NAME,
    default_port: 5019,
    migrations: Some(&MIGRATIONS),
    routes: &[
        "/api/payments",
        "/Payment",
        "/api/Payment",
        "/api/all",
        "/payments",
    ],
    access: &[
        api::RULES,
        numbered::RULES,
        in_person::RULES,
        webhook::RULES,
        manual::RULES[0],
        manual::RULES[1],
    ],
    consumes: &events::TOPICS,
    settings: &[
        PROVIDER_LATENCY_MS,
        PROVIDER_DECLINE_RATE,
        PAYMENTS_IN_FLIGHT,
        PAYMENT_LEASE_SECS,
        kassa_platform::stripe::PROVIDER,
        kassa_platform::stripe::SECRET_KEY,
        kassa_platform::stripe::API_BASE,
        kassa_platform::stripe::WEBHOOK_SECRET,
        QRIS_MERCHANT_NAME,
        QRIS_MERCHANT_CITY,
        QRIS_MERCHANT_ID,
        QRIS_COUNTRY,
        QRIS_CATEGORY,
    ],
    tasks: &[],
    openapi: document,
    build,
};

/// Settings of the payments service.
#[derive(Clone)]
pub struct Config {
    pub provider: Arc<dyn PaymentProvider>,
    pub processor: ProcessorSettings,
}

impl Config {
    pub fn from_options(options: &Options) -> Result<Self, BuildError> {
        let decline_rate: f64 = options.get(&PROVIDER_DECLINE_RATE)?;
        if !(0.0..=1.0).contains(&decline_rate) {
            return Err(BuildError::setting(
                &PROVIDER_DECLINE_RATE,
                "must be between 0 and 1",
            ));
        }
        let max_in_flight: usize = options.get(&PAYMENTS_IN_FLIGHT)?;
        if max_in_flight == 0 {
            return Err(BuildError::setting(
                &PAYMENTS_IN_FLIGHT,
                "must be at least 1",
            ));
        }
        let lease: u64 = options.get(&PAYMENT_LEASE_SECS)?;
        let provider: Arc<dyn PaymentProvider> =
            match kassa_platform::stripe::Stripe::from_options(options)? {
                Some(stripe) => Arc::new(stripe::StripeGateway::new(stripe)),
                None => Arc::new(SimulatedGateway::new(SimulatedSettings {
                    latency: Duration::from_millis(options.get(&PROVIDER_LATENCY_MS)?),
                    decline_rate,
                })),
            };
        Ok(Config {
            provider,
            processor: ProcessorSettings {
                max_in_flight,
                lease: Duration::from_secs(lease.max(1)),
                ..ProcessorSettings::default()
            },
        })
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(webhook::stripe_event), modifiers(&StripeSignature))]
struct WebhookApi;

/// Stripe's webhook is authenticated by its signature header.
struct StripeSignature;

impl utoipa::Modify for StripeSignature {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "stripe_signature",
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                    "Stripe-Signature",
                    "`t=<seconds>,v1=<HMAC-SHA256 of \"t.body\" with the webhook's signing secret>`, \
                     as Stripe sends it.",
                ))),
            );
    }
}

/// The document of both kinds of payment.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = api::PaymentsApi::openapi();
    doc.merge(resource::document::<manual::ManualPayments>(manual::MOUNTS));
    doc.merge(WebhookApi::openapi());
    doc.merge(in_person::InPersonApi::openapi());
    let mut numbered = numbered::NumberedApi::openapi();
    kassa_platform::http::openapi::also_under(
        &mut numbered,
        "/api/Payment",
        "/payments",
        "_gateway",
    );
    doc.merge(numbered);
    doc
}

/// The payments recorded by hand, in `db`, cached in `cache`.
pub fn manual_payments(
    db: kassa_platform::db::Db,
    cache: Arc<dyn kassa_platform::cache::Cache>,
) -> Records<manual::ManualPayments> {
    Records::new(db, NAME).cached(cache, manual::CACHE_TTL)
}

fn build(infra: &Infra) -> Result<ServiceParts, BuildError> {
    let config = Config::from_options(&infra.options)?;
    let db = infra.db()?;
    let refunds = Refunds::default();
    let cards = Arc::new(cards::Cards::new(
        kassa_platform::peer::PeerClient::new(
            infra.directory.clone(),
            "users",
            kassa_platform::peer::PeerSettings::default(),
        ),
        infra.http.tokens.clone(),
    ));
    let (processor, processor_loop) = processor::processor(
        db.clone(),
        config.provider.clone(),
        cards,
        infra.cache.clone(),
        refunds.clone(),
        config.processor.clone(),
    );
    let refund_loop = RefundLoop {
        db: db.clone(),
        provider: config.provider.clone(),
        cache: infra.cache.clone(),
        refunds: refunds.clone(),
        poll: Duration::from_secs(1),
    };
    let webhook_secret: String = infra.options.get(&kassa_platform::stripe::WEBHOOK_SECRET)?;
    let webhook = webhook::router(webhook::Webhook {
        db: db.clone(),
        cache: infra.cache.clone(),
        refunds: refunds.clone(),
        secret: Some(webhook_secret).filter(|s| !s.is_empty()),
    });
    let handler = events::OrderEvents {
        db: db.clone(),
        processor,
        refunds,
        cache: infra.cache.clone(),
        lease: config.processor.lease,
    };
    let merchant = qris::Merchant {
        name: infra.options.get(&QRIS_MERCHANT_NAME)?,
        city: infra.options.get(&QRIS_MERCHANT_CITY)?,
        merchant_id: infra.options.get(&QRIS_MERCHANT_ID)?,
        country: infra.options.get(&QRIS_COUNTRY)?,
        category: infra.options.get(&QRIS_CATEGORY)?,
    }
    .checked()
    .map_err(|e| BuildError::Start(format!("{e} (the --qris-* settings)")))?;
    let in_person = in_person::router(in_person::InPersonState {
        db: db.clone(),
        cache: infra.cache.clone(),
        merchant,
    });
    let manual = manual_payments(db.clone(), infra.cache.clone());
    let state = api::AppState {
        db: db.clone(),
        cache: infra.cache.clone(),
    };
    let api = api::router(state.clone())
        .merge(numbered::router(state))
        .merge(resource::router(manual, manual::MOUNTS))
        .merge(in_person)
        .merge(webhook);
    Ok(ServiceParts::api(api, document)
        .with_handler(Inboxed::new(NAME, db, handler))
        .with_background(processor_loop.run(infra.shutdown.clone()))
        .with_background(refund_loop.run(infra.shutdown.clone())))
}

// The tests name this crate as a user of it would.
#[cfg(test)]
extern crate self as kassa_payments;
#[cfg(test)]
mod tests;
