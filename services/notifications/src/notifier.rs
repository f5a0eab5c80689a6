//! What each event does: `user.*` keeps who customers are and their address, and a payment's
//! receipt (`payment.receipt`, published for signed-up customers' payments beside the outcome)
//! sends its customer one email.
//!
//! An email is claimed before it is handed to the mail server (a row per event, committed) and
//! marked sent once the server took it. A server that refuses or cannot be reached gives the
//! claim back and fails the delivery, so the bus tries again later; a delivery that finds the
//! claim already there sends nothing. So an event is emailed at most once: should the process
//! die between handing the email over and marking it sent, or the server not answer once it
//! may have it (marked `unknown`), the email is not sent again.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use kassa_contracts::{
    Envelope, Money,
    events::{Event, PaymentReceipt, UserCreated, UserProfile, UserUpdated},
};
use kassa_platform::{
    bus::{Handler, HandlerError},
    db::{Db, sql},
};
use lettre::message::Mailbox;
use uuid::Uuid;

use crate::mail::{Mailer, NotSent, Outcome};

/// The event types this consumer is bound to.
pub const TOPICS: [&str; 3] = [UserCreated::TYPE, UserUpdated::TYPE, PaymentReceipt::TYPE];

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

    async fn email(&self, event: &Envelope, receipt: PaymentReceipt) -> Result<(), HandlerError> {
        let customer = sql("SELECT email, name FROM recipients WHERE user_id = $1")
            .bind(receipt.user_id)
            .fetch_optional(&self.db)
            .await?;
        let Some(customer) = customer else {
            // A receipt is for a signed-up customer, whose own event is still on its way.
            return Err(HandlerError::new(format!(
                "the customer of order {} is not known yet",
                receipt.order_id
            )));
        };
        let (address, name): (String, String) = (customer.get("email")?, customer.get("name")?);
        let amount = Money::from_minor(
            receipt.amount_minor,
            kassa_contracts::Currency::parse(&receipt.currency).map_err(HandlerError::new)?,
        )
        .map_err(HandlerError::new)?;
        let details = Outcome {
            approved: receipt.approved,
            order_id: receipt.order_id,
            amount,
            item: receipt.item,
            reference: receipt.reference,
            reason: receipt.reason,
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
        .bind(receipt.order_id)
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
                tracing::info!(event_id = %event.id, order_id = %receipt.order_id, subject = details.subject(), "email sent");
                Ok(())
            }
            Err(NotSent::Unknown(why)) => {
                // The server may have it: sending again could make two. Kept as it is, never
                // sent again.
                sql("UPDATE emails SET status = 'unknown' WHERE event_id = $1")
                    .bind(event.id)
                    .execute(&self.db)
                    .await?;
                tracing::warn!(event_id = %event.id, %why, "the mail server did not answer after the email was handed over; not sent again");
                Ok(())
            }
            Err(NotSent::Refused(why)) => {
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
            PaymentReceipt::TYPE => self.email(event, event.decode()?).await,
            _ => Ok(()),
        }
    }
}
