//! The users service of seed 004: accounts (sign-up, sign-in with a token), and the cards they
//! save for payments. Publishes `user.created|updated`.
//!
//! - `accounts.rs`: sign-up, sign-in, and `/api/users/me`
//! - `methods.rs`: saved cards (payment methods), and their lookup for the payments service
//! - `card.rs`: card numbers as they arrive, and the provider that tokenizes them
//!
//! Seed 004's routes are served where its services serve them (`/auth/…`,
//! `/payment-methods/…`) and where its gateway does (`/api/auth/…`, `/api/payment-methods/…`),
//! answering `{success, data, message}` and errors that also carry `success: false` and
//! `message`.

pub mod accounts;
pub mod card;
pub mod methods;
pub mod principals;

use std::sync::Arc;

use axum::Router;
use kassa_platform::{
    auth::Secret,
    db::Db,
    http::{
        ApiError,
        openapi::{self, ProblemResponses, TokenSecurity},
    },
    migrate::Migrations,
    service::{BuildError, Infra, Service, ServiceParts},
};
use tokio::sync::Semaphore;
use utoipa::OpenApi;

pub const NAME: &str = "users";

pub const MIGRATIONS: Migrations = kassa_platform::migrations!(NAME, [1 "0001_users", 2 "0002_provider_customers", 3 "0003_roles_and_keys"]);

pub static SERVICE: Service = Service {
    name: NAME,
    default_port: 5006,
    migrations: Some(&MIGRATIONS),
    routes: &[
        "/auth",
        "/payment-methods",
        "/api/auth",
        "/api/payment-methods",
        "/api/users",
    ],
    access: &[accounts::RULES, methods::RULES, principals::RULES],
    consumes: &[],
    settings: &[],
    tasks: principals::TASKS,
    openapi: document,
    build,
};

/// What the routes share.
#[derive(Clone)]
pub struct Users {
    pub db: Db,
    /// Signs the tokens sign-in answers.
    pub secret: Secret,
    pub tokenizer: Arc<dyn card::Tokenizer>,
    /// Password hashing costs 19 MiB and tens of milliseconds each: at most one per core at a
    /// time, the rest wait their turn instead of taking every core and the memory with them.
    hashing: Arc<Semaphore>,
}

impl Users {
    pub fn new(db: Db, secret: Secret) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Users {
            db,
            secret,
            tokenizer: Arc::new(card::SimulatedTokenizer),
            hashing: Arc::new(Semaphore::new(cores)),
        }
    }

    /// Runs password work (`kassa_platform::password`) on the blocking pool, one per core.
    pub(crate) async fn hashing<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let _turn = self
            .hashing
            .acquire()
            .await
            .map_err(|_| ApiError::internal())?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|_| ApiError::internal())
    }
}

/// Every route: seed 004's under its services' paths and its gateway's, and kassa's.
pub fn api(users: Users) -> Router {
    let seed = |prefix: &str| {
        accounts::seed_routes(prefix)
            .merge(methods::seed_routes(prefix))
            .layer(axum::middleware::from_fn(
                kassa_platform::http::problem::envelope_errors,
            ))
    };
    seed("")
        .merge(seed("/api"))
        .merge(accounts::routes())
        .merge(methods::routes())
        .merge(principals::routes())
        .with_state(users)
}

#[derive(OpenApi)]
#[openapi(
    info(title = "kassa users", description = "Accounts, sign-in and saved cards (seed 004)."),
    paths(
        accounts::signup, accounts::signin, accounts::read_me, accounts::update_me,
        methods::add_payment_method, methods::payment_method_for_payments,
        methods::list_payment_methods, methods::remove_payment_method,
        principals::key, principals::role,
    ),
    modifiers(&ProblemResponses, &TokenSecurity),
    tags((name = "users", description = "Accounts and saved cards."))
)]
struct UsersApi;

/// The document: seed 004's routes under the services' paths and again under the gateway's.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = UsersApi::openapi();
    openapi::also_under(&mut doc, "/auth", "/api/auth", "_api");
    openapi::also_under(&mut doc, "/payment-methods", "/api/payment-methods", "_api");
    doc
}

fn build(infra: &Infra) -> Result<ServiceParts, BuildError> {
    let secret = infra.http.tokens.clone().ok_or_else(|| {
        BuildError::Start(
            "the users service signs tokens: give it the installation's secret \
             (--token-secret or KASSA_TOKEN_SECRET, at least 32 bytes, the same in every \
             service)"
                .into(),
        )
    })?;
    let mut users = Users::new(infra.db()?, secret);
    if let Some(stripe) = kassa_platform::stripe::Stripe::from_options(&infra.options)? {
        users.tokenizer = Arc::new(card::StripeTokenizer::new(stripe));
    }
    Ok(ServiceParts::api(api(users), document))
}

// The tests name this crate as a user of it would.
#[cfg(test)]
extern crate self as kassa_users;
#[cfg(test)]
mod tests;
