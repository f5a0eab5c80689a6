//! The events kassa services publish, one struct per type, each with its schema version.
//!
//! Amounts travel as integer minor units with their currency code, never as floats.
//!
//! Payloads change only by addition within a version: readers ignore fields they do not know,
//! and a field added later is optional (`#[serde(default)]`), so producers and consumers of
//! different releases understand each other during a rolling deploy. A change that removes a
//! field or changes its meaning bumps the type's `VERSION`, and the type's [`Event::upgrade`]
//! turns every older payload into the current one, so events published before the deploy (or by
//! replicas not yet deployed) are still handled.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A payload that can travel in an [`crate::Envelope`].
pub trait Event: Serialize {
    /// The CloudEvents `type` and the broker routing key.
    const TYPE: &'static str;
    /// The payload schema version; bump it when a field changes meaning or goes away.
    const VERSION: u32;

    /// Turns a payload of an older `version` (1 ≤ version < VERSION) into one of this version.
    /// Types still at their first version have nothing older to upgrade.
    fn upgrade(version: u32, _data: serde_json::Value) -> Result<serde_json::Value, String> {
        Err(format!("no upgrade from version {version}"))
    }
}

macro_rules! event {
    ($name:ident, $type:literal, $version:literal) => {
        impl Event for $name {
            const TYPE: &'static str = $type;
            const VERSION: u32 = $version;
        }
    };
}

/// An order was stored PENDING and waits for its payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCreated {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub amount_minor: i64,
    pub currency: String,
    /// How the order is to be paid: absent, through the provider as seed 003 does;
    /// [`SAVED_CARD`], with the card the customer saved (seed 004).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_method: Option<String>,
    /// What was ordered, in the customer's words (seed 004's `item`), for receipts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    /// The products ordered (seed 002), as the catalog priced them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<OrderedLine>,
    /// The order's number (seed 001's `orderID`), given when the order is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_number: Option<i64>,
}

impl OrderCreated {
    /// Says in an `order.created` envelope which number its order was given when stored (the
    /// envelope is made before the number is known).
    pub fn set_number(envelope: &mut crate::Envelope, number: i64) {
        if envelope.event_type == Self::TYPE
            && let Some(data) = envelope.data.as_object_mut()
        {
            data.insert("orderNumber".into(), number.into());
        }
    }
}

/// One line of an order for products of the catalog, in `order.created`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderedLine {
    pub product_id: Uuid,
    pub name: String,
    pub quantity: i64,
    /// In the order's currency.
    pub unit_price_minor: i64,
    /// Whether a dispenser hands it out (each unit gets a pickup code once the order is paid).
    pub is_dispensable: bool,
}

/// [`OrderCreated::payment_method`] of an order charged to the customer's saved card.
pub const SAVED_CARD: &str = "saved_card";
event!(OrderCreated, "order.created", 1);

/// A customer cancelled an order; its payment is to be cancelled or refunded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCancelled {
    pub order_id: Uuid,
}
event!(OrderCancelled, "order.cancelled", 1);

/// An order's payment was approved and the order is PAID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderPaid {
    pub order_id: Uuid,
    pub payment_id: Uuid,
}
event!(OrderPaid, "order.paid", 1);

/// An order's payment did not go through and the order is FAILED.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderFailed {
    pub order_id: Uuid,
    pub reason: String,
}
event!(OrderFailed, "order.failed", 1);

/// What every payment outcome event carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentOutcome {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub amount_minor: i64,
    pub currency: String,
    /// Why the provider said no, for declined and failed payments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The provider's id for the charge (a Stripe PaymentIntent), for approved payments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

macro_rules! payment_event {
    ($name:ident, $type:literal) => {
        #[doc = concat!("`", $type, "`: see [`PaymentOutcome`].")]
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub PaymentOutcome);
        event!($name, $type, 1);
    };
}

payment_event!(PaymentApproved, "payment.approved");
payment_event!(PaymentDeclined, "payment.declined");
payment_event!(PaymentFailed, "payment.failed");
payment_event!(PaymentCancelled, "payment.cancelled");
payment_event!(PaymentRefunded, "payment.refunded");

/// `payment.receipt`: what a signed-up customer is told about a payment of theirs (seed 004's
/// orders, charged to a saved card), published beside its outcome event. Its own type, so that
/// the checkout's other payments put nothing on the queue of whoever writes to customers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentReceipt {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub amount_minor: i64,
    pub currency: String,
    /// Whether the payment went through.
    pub approved: bool,
    /// What was ordered, in the customer's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    /// The provider's id for the charge, when it went through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Why it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
event!(PaymentReceipt, "payment.receipt", 1);

/// A member was enrolled in a class (seed 000's gym; published by classes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentCreated {
    pub class_id: Uuid,
    pub member_id: Uuid,
}
event!(EnrollmentCreated, "enrollment.created", 1);

/// A member left a class, or the class or the member was deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentDeleted {
    pub class_id: Uuid,
    pub member_id: Uuid,
}
event!(EnrollmentDeleted, "enrollment.deleted", 1);

/// What `user.created` and `user.updated` carry: who the user is and how to reach them, never a
/// password or a card (published by users).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserProfile {
    pub user_id: Uuid,
    pub name: String,
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
}

/// `user.created`: someone signed up; see [`UserProfile`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserCreated(pub UserProfile);
event!(UserCreated, "user.created", 1);

/// `user.updated`: a user changed their profile; see [`UserProfile`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserUpdated(pub UserProfile);
event!(UserUpdated, "user.updated", 1);

/// One line of an order for products of the catalog (seed 002): which product, how many.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderItem {
    pub product_id: Uuid,
    pub quantity: i64,
}

/// `order.completed`: every item of a paid order was handed out (seed 002's
/// `OrderCompletedEvent`); inventory turns what the order held into units sold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCompleted {
    pub order_id: Uuid,
    pub items: Vec<OrderItem>,
    /// When it completed (RFC 3339).
    pub timestamp: String,
}
event!(OrderCompleted, "order.completed", 1);

/// `stock.low`: a product's units available to order fell to its low-stock threshold or below
/// it; published once per crossing (published by inventory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockLow {
    pub inventory_id: Uuid,
    pub product_id: Uuid,
    pub product_name: String,
    pub available: i64,
    pub low_stock_threshold: i64,
}
event!(StockLow, "stock.low", 1);

/// `reservation.expired`: an order held stock longer than its reservation allowed without being
/// paid; the stock is back on sale and the order is to be cancelled (published by inventory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReservationExpired {
    pub order_id: Uuid,
}
event!(ReservationExpired, "reservation.expired", 1);

/// [`OrderCreated::payment_method`] of an order paid in person with cash (seed 002).
pub const CASH: &str = "Cash";
/// [`OrderCreated::payment_method`] of an order paid in person by scanning a QRIS code.
pub const QRIS: &str = "QRIS";

/// `payment.completed`: an in-person payment (Cash, QRIS) was confirmed by the kiosk, the seed's
/// `PaymentCompletedEvent` (published by payments beside `payment.approved`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentCompleted {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub amount_minor: i64,
    pub currency: String,
    /// `Cash` or `QRIS`.
    pub method: String,
    /// When it was confirmed (RFC 3339).
    pub timestamp: String,
}
event!(PaymentCompleted, "payment.completed", 1);

/// `order.ready`: an order for products of the catalog (seed 002) was paid, published beside
/// its `order.paid`: inventory keeps what it holds, qr issues the pickup codes. Its own type so
/// that the checkout's orders, which have no items, put nothing on those services' queues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderReady {
    pub order_id: Uuid,
    pub lines: Vec<OrderedLine>,
}
event!(OrderReady, "order.ready", 1);

/// `pickup.completed`: every dispensable unit of a paid order was handed out by a dispenser (or
/// it had none to hand out); the order is complete (published by qr).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PickupCompleted {
    pub order_id: Uuid,
}
event!(PickupCompleted, "pickup.completed", 1);
