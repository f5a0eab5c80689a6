//! Payments recorded by hand, seed 000's: a gym member pays at the desk, by card or in cash, and
//! staff record it. Served under `/api/payments/manual` and, as the seed's clients call it,
//! `/Payment`; announced as `payment.created|updated|deleted`; reads are cache-aside for five
//! minutes (Redis, or memory when embedded).
//!
//! A payment is recorded `Pending`; `Completed` stamps `paidAt`. Once it is no longer pending,
//! its member, amount, currency and method are what was paid and stay so; only its status moves
//! on (`Completed` to `Refunded`), and a completed or refunded payment is not deleted: it is
//! part of the books. The member must be one this service has heard of from `member.*` events
//! and not deleted.

use std::time::Duration;

use chrono::{DateTime, Utc};
use kassa_contracts::Currency;
use kassa_platform::{
    access::{Policy, Rule},
    auth::Role,
    db::Tx,
    http::{ApiError, openapi::currency_input},
    known,
    resource::{Field, Mount, Resource, ResourceSpec, Stored},
    validate::Amount,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;
use uuid::Uuid;

/// How long a payment stays cached after it was read or changed (the seed's five minutes).
pub const CACHE_TTL: Duration = Duration::from_secs(300);

/// The kind of record whose events say a member exists.
pub const MEMBER: &str = "member";

/// Where the routes are served: kassa's, and the seed's.
pub const MOUNTS: &[Mount] = &[
    Mount::kassa("/api/payments/manual"),
    Mount::seed("/Payment"),
];

/// The gym's front desk and the staff record and settle manual payments; seed 000's clients may
/// be let in anonymously (`seed000`).
pub const RULES: &[&[Rule]] = &[
    kassa_platform::record_rules!("/api/payments/manual", DESK, DESK),
    kassa_platform::record_rules!("/Payment", DESK, DESK, seed, Some("seed000")),
];

const DESK: Policy = Policy::STAFF.and(&[Role::Desk]);

/// Where a payment stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum Status {
    /// Recorded, not yet paid.
    #[default]
    Pending,
    /// Paid; `paidAt` says when.
    Completed,
    /// The attempt to pay failed.
    Failed,
    /// Called off before it was paid.
    Cancelled,
    /// Paid, then given back.
    Refunded,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Pending,
        Status::Completed,
        Status::Failed,
        Status::Cancelled,
        Status::Refunded,
    ];

    /// The name the API and the database use.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "Pending",
            Status::Completed => "Completed",
            Status::Failed => "Failed",
            Status::Cancelled => "Cancelled",
            Status::Refunded => "Refunded",
        }
    }

    /// Whether a payment in this status may be put in `next`.
    fn may_become(self, next: Status) -> bool {
        use Status::*;
        self == next
            || matches!(
                (self, next),
                (Pending, Completed | Failed | Cancelled) | (Completed, Refunded)
            )
    }

    /// Whether the payment records money that changed hands.
    fn settled(self) -> bool {
        matches!(self, Status::Completed | Status::Refunded)
    }
}

/// How the member paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum PaymentMethod {
    Cash,
    CreditCard,
    DebitCard,
    BankTransfer,
    DigitalWallet,
}

impl PaymentMethod {
    pub const ALL: [PaymentMethod; 5] = [
        PaymentMethod::Cash,
        PaymentMethod::CreditCard,
        PaymentMethod::DebitCard,
        PaymentMethod::BankTransfer,
        PaymentMethod::DigitalWallet,
    ];

    /// The name as JSON writes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            PaymentMethod::Cash => "Cash",
            PaymentMethod::CreditCard => "CreditCard",
            PaymentMethod::DebitCard => "DebitCard",
            PaymentMethod::BankTransfer => "BankTransfer",
            PaymentMethod::DigitalWallet => "DigitalWallet",
        }
    }
}

/// Gym amounts have two decimal places (the seed's `numeric(18,2)`): the currencies whose minor
/// unit is a hundredth, so that `amount_minor` counts minor units as everywhere in kassa.
fn currencies() -> impl Iterator<Item = Currency> {
    Currency::all().filter(|c| c.exponent() == 2)
}

fn currency_schema() -> utoipa::openapi::schema::Schema {
    let codes: Vec<Currency> = currencies().collect();
    let codes: Vec<&str> = codes.iter().map(Currency::code).collect();
    let mut schema = currency_input(&codes);
    if let utoipa::openapi::schema::Schema::Object(o) = &mut schema {
        o.description = Some(format!(
            "{} USD when absent.",
            o.description.as_deref().unwrap_or_default()
        ));
    }
    schema
}

/// A currency code as [`currency_schema`] states it: three letters, any case, from the list.
fn read_currency<'de, D: Deserializer<'de>>(d: D) -> Result<Currency, D::Error> {
    let code = String::deserialize(d)?;
    kassa_platform::http::parse_currency("currency", &code)
        .ok()
        .filter(|c| c.exponent() == 2)
        .ok_or_else(|| {
            serde::de::Error::custom(
                "invalid_currency: must be the ISO 4217 code of a currency with two decimal \
                 places, such as USD",
            )
        })
}

fn usd() -> Currency {
    Currency::USD
}

pub(crate) fn write_time<S: Serializer>(
    t: &Option<DateTime<Utc>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => kassa_contracts::json::timestamp(t, s),
        None => s.serialize_none(),
    }
}

/// A payment as clients send and read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = ManualPayment)]
pub struct ManualPayment {
    /// The member who pays: one the service knows and that is not deleted.
    pub member_id: Uuid,
    pub amount: Amount<2>,
    #[serde(default = "usd", deserialize_with = "read_currency")]
    #[schema(schema_with = currency_schema)]
    pub currency: Currency,
    pub payment_method: PaymentMethod,
    /// `Pending` when recorded (the default); then `Completed`, `Failed` or `Cancelled`;
    /// `Completed` may become `Refunded`.
    #[serde(default)]
    pub status: Status,
    /// When it was completed; kept by the service.
    #[serde(default, serialize_with = "write_time")]
    #[schema(read_only, value_type = Option<String>, format = DateTime)]
    pub paid_at: Option<DateTime<Utc>>,
}

pub struct ManualPayments;

const SPEC: ResourceSpec = ResourceSpec {
    kind: "payment",
    title: "ManualPayment",
    table: "manual_payments",
    fields: &[
        Field::uuid("memberId", "member_id").filtered(),
        Field::amount("amount", "amount_minor", 2),
        Field::text("currency", "currency").filtered(),
        Field::text("paymentMethod", "payment_method").filtered(),
        Field::text("status", "status").filtered(),
        Field::timestamp("paidAt", "paid_at").kept(),
    ],
    unique: &[],
    not_found: "payment_not_found",
    conflicts: "`unknown_member`: `memberId` names no member known here (yet), or a deleted one; \
        `invalid_status_change`: the status cannot follow the current one; `payment_settled`: \
        the payment is Completed or Refunded, and only its status may change; `payment_closed`: \
        the payment is Failed or Cancelled, and nothing it records changes.",
    undeletable: "`payment_settled`: the payment is Completed or Refunded, part of the books; \
        refund it instead.",
};

/// The refusal of a change to what a payment that is no longer pending records.
fn settled(status: Status) -> ApiError {
    if status.settled() {
        ApiError::conflict(
            "payment_settled",
            format!(
                "The payment is {status:?}: money changed hands, so only its status may change \
                 (to Refunded), and it is not deleted."
            ),
        )
    } else {
        ApiError::conflict(
            "payment_closed",
            format!("The payment is {status:?}: it is closed, and nothing it records changes."),
        )
    }
}

#[async_trait::async_trait]
impl Resource for ManualPayments {
    type Fields = ManualPayment;
    const SPEC: &'static ResourceSpec = &SPEC;

    fn settle(current: Option<&ManualPayment>, next: &mut ManualPayment) -> Result<(), ApiError> {
        let Some(current) = current else {
            if next.status != Status::Pending {
                return Err(ApiError::conflict(
                    "invalid_status_change",
                    "A payment is recorded Pending; complete it with an update.",
                )
                .with_param("status"));
            }
            return Ok(());
        };
        let paid = (
            next.member_id,
            next.amount,
            next.currency,
            next.payment_method,
        );
        if current.status != Status::Pending
            && paid
                != (
                    current.member_id,
                    current.amount,
                    current.currency,
                    current.payment_method,
                )
        {
            return Err(settled(current.status));
        }
        if !current.status.may_become(next.status) {
            return Err(ApiError::conflict(
                "invalid_status_change",
                format!(
                    "A {:?} payment cannot become {:?}.",
                    current.status, next.status
                ),
            )
            .with_param("status"));
        }
        if next.status == Status::Completed && current.status != Status::Completed {
            next.paid_at = Some(kassa_contracts::now());
        }
        Ok(())
    }

    async fn in_write(
        tx: &mut Tx,
        current: Option<&Stored<ManualPayment>>,
        payment: Option<&ManualPayment>,
    ) -> Result<(), ApiError> {
        let Some(payment) = payment else {
            // A deletion: only of what never became money.
            if let Some(current) = current
                && current.fields.status.settled()
            {
                return Err(settled(current.fields.status));
            }
            return Ok(());
        };
        let member_changed = current.is_none_or(|c| c.fields.member_id != payment.member_id);
        if member_changed && !known::exists(tx, MEMBER, payment.member_id).await? {
            // A conflict with what this service knows now: retry once `member.created` arrived.
            return Err(ApiError::conflict(
                "unknown_member",
                "`memberId` names no member this service knows (yet), or one that was deleted.",
            )
            .with_param("memberId"));
        }
        Ok(())
    }
}
