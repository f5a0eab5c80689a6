//! What each event does: `user.*` keeps who customers are and their address, `order.created`
//! whose each order is and what for, and a payment's outcome sends its customer one email.
//!
//! An email is claimed before it is handed to the mail server (a row per event, committed) and
//! marked sent once the server took it. A server that refuses or cannot be reached gives the
//! claim back and fails the delivery, so the bus tries again later; a delivery that finds the
//! claim already there sends nothing. So an event is emailed at most once: should the process
//! die between handing the email over and marking it sent, the email is not sent again.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use kassa_contracts::{
    Envelope, Money,
    events::{
        Event, OrderCreated, PaymentApproved, PaymentDeclined, PaymentFailed, PaymentOutcome,
        UserCreated, UserProfile, UserUpdated,
    },
};
use kassa_platform::{
    bus::{Handler, HandlerError},
    db::{Db, sql},
};
use lettre::message::Mailbox;
use uuid::Uuid;

use crate::mail::{Mailer, Outcome};

/// The event types this consumer is bound to.
pub const TOPICS: [&str; 6] = [
    UserCreated::TYPE,
    UserUpdated::TYPE,
    OrderCreated::TYPE,
    PaymentApproved::TYPE,
    PaymentDeclined::TYPE,
    PaymentFailed::TYPE,
];

pub struct Notifier {
    db: Db,
    mailer: Arc<dyn Mailer>,
    from: Mailbox,
}

impl Notifier {
    pub fn new(db: Db, mailer: Arc<dyn Mailer>, from: Mailbox) -> Self {
        Notifier { db, mailer, from }
    }

    async fn remember_user(&self, user: UserProfile) -> Result<(), HandlerError> {
        sql(
            "INSERT INTO recipients (user_id, email, name) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO UPDATE SET email = excluded.email, name = excluded.name",
        )
        .bind(user.user_id)
        .bind(user.email)
        .bind(user.name)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    async fn remember_order(&self, order: OrderCreated) -> Result<(), HandlerError> {
        sql(
            "INSERT INTO orders_known (order_id, user_id, item) VALUES ($1, $2, $3) \
             ON CONFLICT (order_id) DO NOTHING",
        )
        .bind(order.order_id)
        .bind(order.user_id)
        .bind(order.item)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    async fn email(
        &self,
        event: &Envelope,
        outcome: PaymentOutcome,
        approved: bool,
    ) -> Result<(), HandlerError> {
        let order = sql("SELECT o.item, r.email, r.name FROM orders_known o \
             LEFT JOIN recipients r ON r.user_id = o.user_id WHERE o.order_id = $1")
        .bind(outcome.order_id)
        .fetch_optional(&self.db)
        .await?;
        let Some(order) = order else {
            // The order's own event comes first; until it has been handled, try again.
            return Err(HandlerError::new(format!(
                "order {} is not known yet",
                outcome.order_id
            )));
        };
        let (Some(address), Some(name)) = (
            order.get::<Option<String>>("email")?,
            order.get::<Option<String>>("name")?,
        ) else {
            // An order of no signed-up customer (seed 003's): no one to write to.
            tracing::debug!(order_id = %outcome.order_id, "no address for this order's customer");
            return Ok(());
        };
        let amount = Money::from_minor(
            outcome.amount_minor,
            kassa_contracts::Currency::parse(&outcome.currency).map_err(HandlerError::new)?,
        )
        .map_err(HandlerError::new)?;
        let details = Outcome {
            approved,
            order_id: outcome.order_id,
            amount,
            item: order.get("item")?,
            reference: outcome.reference,
            reason: outcome.reason,
        };
        let to: Mailbox = format!("{name} <{address}>")
            .parse()
            .or_else(|_| address.parse())
            .map_err(HandlerError::new)?;
        let message = details
            .message(event.id, &self.from, to, &name)
            .map_err(HandlerError::new)?;
        let claimed = sql(
            "INSERT INTO emails (event_id, order_id, recipient, subject, status, created_at) \
             VALUES ($1, $2, $3, $4, 'sending', $5) ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(event.id)
        .bind(outcome.order_id)
        .bind(address.as_str())
        .bind(details.subject())
        .bind(Utc::now())
        .execute(&self.db)
        .await?;
        if claimed == 0 {
            tracing::info!(event_id = %event.id, "email for this event already sent (or being sent); not sent again");
            return Ok(());
        }
        match self.mailer.send(message).await {
            Ok(()) => {
                sql("UPDATE emails SET status = 'sent', sent_at = $1 WHERE event_id = $2")
                    .bind(Utc::now())
                    .bind(event.id)
                    .execute(&self.db)
                    .await?;
                tracing::info!(event_id = %event.id, order_id = %outcome.order_id, subject = details.subject(), "email sent");
                Ok(())
            }
            Err(why) => {
                // Not sent: the claim goes, and the delivery is tried again.
                sql("DELETE FROM emails WHERE event_id = $1")
                    .bind(event.id)
                    .execute(&self.db)
                    .await?;
                Err(HandlerError::new(format!(
                    "the mail server did not take the email: {why}"
                )))
            }
        }
    }
}

/// Emails sent so far (status `sent`), for tests and operators.
pub async fn sent(db: &Db) -> Result<Vec<(Uuid, String, String)>, kassa_platform::db::DbError> {
    let rows = sql(
        "SELECT event_id, recipient, subject FROM emails WHERE status = 'sent' ORDER BY created_at",
    )
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| Ok((r.get("event_id")?, r.get("recipient")?, r.get("subject")?)))
        .collect()
}

#[async_trait]
impl Handler for Notifier {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError> {
        match event.event_type.as_str() {
            UserCreated::TYPE => self.remember_user(event.decode::<UserCreated>()?.0).await,
            UserUpdated::TYPE => self.remember_user(event.decode::<UserUpdated>()?.0).await,
            OrderCreated::TYPE => self.remember_order(event.decode()?).await,
            PaymentApproved::TYPE => {
                self.email(event, event.decode::<PaymentApproved>()?.0, true)
                    .await
            }
            PaymentDeclined::TYPE => {
                self.email(event, event.decode::<PaymentDeclined>()?.0, false)
                    .await
            }
            PaymentFailed::TYPE => {
                self.email(event, event.decode::<PaymentFailed>()?.0, false)
                    .await
            }
            _ => Ok(()),
        }
    }
}
