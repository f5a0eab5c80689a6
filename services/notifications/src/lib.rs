//! The notifications service of seed 004: an email to the customer about each payment's
//! outcome ("Payment Successful - Thank You!" / "Payment Failed - Action Required", with the
//! amount, the order, the item and the provider's payment id; HTML and text).
//!
//! - `mail.rs`: the emails, and where they go (an SMTP server, or `.eml` files in a folder)
//! - `notifier.rs`: what each event does (who customers are, what orders are for, the emails)
//!
//! It knows customers' addresses from `user.*` events, and each payment from its receipt
//! (`payment.receipt`), never from another service's tables. An email is sent at most once per payment event, however
//! often the event is delivered; a mail server that refuses or is down fails the delivery, which
//! the bus retries with backoff and then dead-letters (`kassa dlq redrive` sends it later).

pub mod mail;
pub mod notifier;

use std::sync::Arc;

use kassa_platform::{
    migrate::Migrations,
    service::{BuildError, Infra, Service, ServiceParts, Setting},
};

pub const NAME: &str = "notifications";

pub const MIGRATIONS: Migrations = kassa_platform::migrations!(NAME, [1 "0001_notifications"]);

pub const SMTP_URL: Setting = Setting {
    name: "smtp-url",
    default: "",
    help: "Mail server for the emails: smtp://host:port (plain), smtp://…?tls=required \
           (STARTTLS) or smtps://host (TLS), with user:password@ if it asks; none: .eml files \
           in --mail-dir",
    secret: true,
};

pub const MAIL_DIR: Setting = Setting {
    name: "mail-dir",
    default: "",
    help: "Folder the emails are written to as .eml files when no --smtp-url is given \
           (default: <data-dir>/mail embedded, ./mail distributed)",
    secret: false,
};

pub const MAIL_FROM: Setting = Setting {
    name: "mail-from",
    default: "kassa <no-reply@kassa.invalid>",
    help: "The sender of the emails",
    secret: false,
};

pub static SERVICE: Service = Service {
    name: NAME,
    default_port: 5007,
    migrations: Some(&MIGRATIONS),
    routes: &[],
    access: &[],
    consumes: &notifier::TOPICS,
    settings: &[SMTP_URL, MAIL_DIR, MAIL_FROM],
    tasks: &[],
    openapi: document,
    build,
};

/// The service serves no API of its own beyond health and metrics.
pub fn document() -> utoipa::openapi::OpenApi {
    utoipa::openapi::OpenApiBuilder::new()
        .info(
            utoipa::openapi::InfoBuilder::new()
                .title("kassa notifications")
                .description(Some("Emails about payments; no API of its own."))
                .version(env!("CARGO_PKG_VERSION"))
                .build(),
        )
        .build()
}

fn build(infra: &Infra) -> Result<ServiceParts, BuildError> {
    let smtp: String = infra.options.get(&SMTP_URL)?;
    let mailer: Arc<dyn mail::Mailer> = if smtp.trim().is_empty() {
        let dir: String = infra.options.get(&MAIL_DIR)?;
        let dir = if dir.is_empty() {
            "mail".to_owned()
        } else {
            dir
        };
        Arc::new(mail::Files::new(&dir).map_err(|e| BuildError::setting(&MAIL_DIR, e))?)
    } else {
        Arc::new(mail::Smtp::new(smtp.trim()).map_err(|e| BuildError::setting(&SMTP_URL, e))?)
    };
    let from: String = infra.options.get(&MAIL_FROM)?;
    let from = from
        .parse()
        .map_err(|e| BuildError::setting(&MAIL_FROM, format!("not an address: {e}")))?;
    let notifier = notifier::Notifier::new(infra.db()?, mailer, from);
    Ok(ServiceParts::api(axum::Router::new(), document).with_handler(notifier))
}
