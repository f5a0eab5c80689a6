//! Payments and their life: PROCESSING while the provider decides, then APPROVED, DECLINED or
//! FAILED; CANCELLED or REFUNDED when the order is cancelled. Free of HTTP and SQL.

use chrono::{DateTime, Utc};
use kassa_contracts::Money;
use uuid::Uuid;

kassa_contracts::status_enum! {
    /// Where a payment stands, as seed 003 names it.
    pub enum PaymentStatus {
        Processing = "PROCESSING",
        /// Waits for the customer to pay in person (seed 002: Cash, QRIS) and the kiosk to
        /// confirm it.
        Pending = "PENDING",
        Approved = "APPROVED",
        Declined = "DECLINED",
        Failed = "FAILED",
        Cancelled = "CANCELLED" | "CANCELED",
        Refunded = "REFUNDED",
    }
}

kassa_contracts::status_enum! {
    /// How a payment is made in person (seed 002), as its clients write it.
    pub enum InPerson {
        Cash = "Cash",
        Qris = "QRIS",
    }
}

kassa_contracts::status_enum! {
    /// Why money goes back to the customer.
    pub enum RefundKind {
        /// The order of an approved payment was cancelled: the payment becomes REFUNDED.
        Refund = "refund",
        /// The provider approved a charge after its payment was cancelled: it stays CANCELLED.
        Void = "void",
    }
}

/// What the provider said about a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    Approved {
        reference: String,
    },
    Declined {
        reason: String,
    },
    /// The provider could not process the charge (an error on its side).
    Failed {
        reason: String,
    },
}

/// What cancelling the order does to its payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnOrderCancelled {
    /// Stop the charge in progress: CANCELLED.
    Cancel,
    /// Give the money back: REFUNDED.
    Refund,
    /// Nothing was taken, or it was already given back.
    Nothing,
}

impl PaymentStatus {
    /// The status a provider outcome moves a PROCESSING payment to; `None` when the payment is no
    /// longer PROCESSING (it was cancelled meanwhile, or already settled).
    pub fn settle(self, outcome: &ChargeOutcome) -> Option<PaymentStatus> {
        match self {
            PaymentStatus::Processing => Some(match outcome {
                ChargeOutcome::Approved { .. } => PaymentStatus::Approved,
                ChargeOutcome::Declined { .. } => PaymentStatus::Declined,
                ChargeOutcome::Failed { .. } => PaymentStatus::Failed,
            }),
            PaymentStatus::Pending
            | PaymentStatus::Approved
            | PaymentStatus::Declined
            | PaymentStatus::Failed
            | PaymentStatus::Cancelled
            | PaymentStatus::Refunded => None,
        }
    }

    pub fn on_order_cancelled(self) -> OnOrderCancelled {
        match self {
            PaymentStatus::Processing | PaymentStatus::Pending => OnOrderCancelled::Cancel,
            PaymentStatus::Approved => OnOrderCancelled::Refund,
            PaymentStatus::Declined
            | PaymentStatus::Failed
            | PaymentStatus::Cancelled
            | PaymentStatus::Refunded => OnOrderCancelled::Nothing,
        }
    }
}

/// A payment as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub id: Uuid,
    pub order_id: Uuid,
    /// The order's number (seed 001's `orderID`), when `order.created` told it.
    pub order_number: Option<i64>,
    pub user_id: Option<Uuid>,
    pub amount: Money,
    pub status: PaymentStatus,
    pub reason: Option<String>,
    pub provider_reference: Option<String>,
    /// Charged to the card the customer saved (seed 004), which users is asked for; else
    /// charged through the provider as seed 003's are.
    pub saved_card: bool,
    /// What a saved-card order is for, for the customer's receipt.
    pub item: Option<String>,
    /// Paid in person (seed 002), not through the provider.
    pub method: Option<InPerson>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Payment {
    /// A payment for an order, in `status` (PROCESSING, or CANCELLED when the order was
    /// cancelled before its payment started).
    pub fn for_order(order_id: Uuid, user_id: Uuid, amount: Money, status: PaymentStatus) -> Self {
        let now = kassa_contracts::now();
        Payment {
            id: Uuid::now_v7(),
            order_id,
            order_number: None,
            user_id: Some(user_id),
            amount,
            status,
            reason: None,
            provider_reference: None,
            saved_card: false,
            item: None,
            method: None,
            created_at: now,
            updated_at: now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ChargeOutcome, OnOrderCancelled, PaymentStatus::*};

    #[test]
    fn only_a_processing_payment_is_settled() {
        let ok = ChargeOutcome::Approved {
            reference: "r".into(),
        };
        let no = ChargeOutcome::Declined { reason: "x".into() };
        let err = ChargeOutcome::Failed { reason: "x".into() };
        assert_eq!(Processing.settle(&ok), Some(Approved));
        assert_eq!(Processing.settle(&no), Some(Declined));
        assert_eq!(Processing.settle(&err), Some(Failed));
        for s in [Approved, Declined, Failed, Cancelled, Refunded] {
            assert_eq!(s.settle(&ok), None);
        }
    }

    #[test]
    fn cancelling_the_order_cancels_or_refunds() {
        assert_eq!(Processing.on_order_cancelled(), OnOrderCancelled::Cancel);
        assert_eq!(Approved.on_order_cancelled(), OnOrderCancelled::Refund);
        for s in [Declined, Failed, Cancelled, Refunded] {
            assert_eq!(s.on_order_cancelled(), OnOrderCancelled::Nothing);
        }
    }
}
