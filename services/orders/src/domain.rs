//! Orders and their life: PENDING until the payment says otherwise, then PAID or FAILED;
//! CANCELLED when the customer asks. Free of HTTP and SQL.

use chrono::{DateTime, Utc};
use kassa_contracts::Money;
use uuid::Uuid;

kassa_contracts::status_enum! {
    /// Where an order stands. Emitted in upper case as seed 003 shows; read in any case.
    pub enum OrderStatus {
        Pending = "PENDING",
        Paid = "PAID",
        /// Paid, and every item handed out (seed 002).
        Completed = "COMPLETED",
        Failed = "FAILED",
        Cancelled = "CANCELLED" | "CANCELED",
    }
}

/// What an event or a request does to an order in a given status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Move to this status.
    To(OrderStatus),
    /// Nothing to do: already there, or overtaken by a later decision.
    Ignore,
    /// Not allowed from the current status.
    Refuse,
}

impl OrderStatus {
    /// The payment was approved.
    pub fn on_payment_approved(self) -> Transition {
        match self {
            OrderStatus::Pending => Transition::To(OrderStatus::Paid),
            OrderStatus::Paid | OrderStatus::Completed => Transition::Ignore,
            // Payments refunds or voids the charge of a cancelled order on its own.
            OrderStatus::Cancelled => Transition::Ignore,
            // One payment per order: an approval after a failure is a contradiction; keep FAILED.
            OrderStatus::Failed => Transition::Refuse,
        }
    }

    /// The payment was declined or failed.
    pub fn on_payment_unsuccessful(self) -> Transition {
        match self {
            OrderStatus::Pending => Transition::To(OrderStatus::Failed),
            OrderStatus::Failed | OrderStatus::Cancelled => Transition::Ignore,
            // A paid order is never failed by a late event.
            OrderStatus::Paid | OrderStatus::Completed => Transition::Refuse,
        }
    }

    /// The order's stock hold expired before it was paid: its items are back on sale.
    pub fn on_hold_expired(self) -> Transition {
        match self {
            OrderStatus::Pending => Transition::To(OrderStatus::Cancelled),
            OrderStatus::Cancelled | OrderStatus::Failed => Transition::Ignore,
            // Paid before the hold ran out, paid as the hold ran out: inventory keeps a paid
            // order's hold, and a paid order is not taken back for it.
            OrderStatus::Paid | OrderStatus::Completed => Transition::Refuse,
        }
    }

    /// Every item of the paid order was handed out.
    pub fn on_pickup_completed(self) -> Transition {
        match self {
            OrderStatus::Paid => Transition::To(OrderStatus::Completed),
            OrderStatus::Completed => Transition::Ignore,
            // Handed out before the approval was heard of cannot happen (codes are issued on
            // payment); after a cancellation or failure it contradicts the order.
            OrderStatus::Pending | OrderStatus::Failed | OrderStatus::Cancelled => {
                Transition::Refuse
            }
        }
    }

    /// The customer asked to cancel.
    pub fn on_cancel_requested(self) -> Transition {
        match self {
            OrderStatus::Pending | OrderStatus::Paid => Transition::To(OrderStatus::Cancelled),
            OrderStatus::Cancelled => Transition::Ignore,
            // What was handed out is not taken back by cancelling.
            OrderStatus::Failed | OrderStatus::Completed => Transition::Refuse,
        }
    }
}

/// An order as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: Uuid,
    /// 1, 2, 3… in the order orders were stored (seed 001's `orderID`); 0 until it is stored.
    pub number: i64,
    pub user_id: Uuid,
    pub total: Money,
    pub status: OrderStatus,
    pub failure_reason: Option<String>,
    /// What it is for, in the customer's words (seed 004's orders).
    pub item: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Order {
    /// A new order waiting for its payment.
    pub fn place(user_id: Uuid, total: Money) -> Self {
        let now = kassa_contracts::now();
        Order {
            id: Uuid::now_v7(),
            number: 0,
            user_id,
            total,
            status: OrderStatus::Pending,
            failure_reason: None,
            item: None,
            created_at: now,
            updated_at: now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{OrderStatus::*, Transition::*};

    #[test]
    fn a_paid_order_is_not_failed_by_a_late_event() {
        assert_eq!(Paid.on_payment_unsuccessful(), Refuse);
        assert_eq!(Pending.on_payment_unsuccessful(), To(Failed));
        assert_eq!(Failed.on_payment_unsuccessful(), Ignore);
    }

    #[test]
    fn approval_pays_only_a_pending_order() {
        assert_eq!(Pending.on_payment_approved(), To(Paid));
        assert_eq!(Paid.on_payment_approved(), Ignore);
        assert_eq!(Cancelled.on_payment_approved(), Ignore);
        assert_eq!(Failed.on_payment_approved(), Refuse);
    }

    #[test]
    fn an_expired_hold_cancels_only_an_unpaid_order() {
        assert_eq!(Pending.on_hold_expired(), To(Cancelled));
        assert_eq!(Paid.on_hold_expired(), Refuse);
        assert_eq!(Cancelled.on_hold_expired(), Ignore);
        assert_eq!(Failed.on_hold_expired(), Ignore);
    }

    #[test]
    fn an_order_completes_once_paid_and_handed_out() {
        assert_eq!(Paid.on_pickup_completed(), To(Completed));
        assert_eq!(Completed.on_pickup_completed(), Ignore);
        assert_eq!(Pending.on_pickup_completed(), Refuse);
        assert_eq!(Completed.on_cancel_requested(), Refuse);
        assert_eq!(Completed.on_payment_unsuccessful(), Refuse);
    }

    #[test]
    fn cancelling() {
        assert_eq!(Pending.on_cancel_requested(), To(Cancelled));
        assert_eq!(Paid.on_cancel_requested(), To(Cancelled));
        assert_eq!(Cancelled.on_cancel_requested(), Ignore);
        assert_eq!(Failed.on_cancel_requested(), Refuse);
    }

    #[test]
    fn statuses_read_in_any_case() {
        for s in [Pending, Paid, Failed, Cancelled] {
            assert_eq!(
                super::OrderStatus::parse(&s.as_str().to_lowercase()),
                Some(s)
            );
        }
        assert_eq!(super::OrderStatus::parse("Canceled"), Some(Cancelled));
        assert_eq!(super::OrderStatus::parse("SHIPPED"), None);
    }
}
