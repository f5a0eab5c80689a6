//! The emails about payments, and where they are sent: an SMTP server (STARTTLS or TLS when its
//! URL asks for it), or `.eml` files in a folder (an embedded installation with no server).

use std::time::Duration;

use async_trait::async_trait;
use kassa_contracts::Money;
use lettre::{
    AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart},
};
use uuid::Uuid;

/// Why a message was not surely delivered to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotSent {
    /// The server refused it or could not be reached: it does not have it.
    Refused(String),
    /// No answer in time after the message may have been handed over: whether the server took
    /// it is not known.
    Unknown(String),
}

/// Sends one message.
#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    async fn send(&self, message: Message) -> Result<(), NotSent>;
}

/// An SMTP server.
pub struct Smtp(AsyncSmtpTransport<Tokio1Executor>);

impl Smtp {
    pub fn new(url: &str) -> Result<Self, String> {
        kassa_platform::http::https_ready();
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| format!("`{}`: {e}", kassa_platform::redact::url(url)))?
            .timeout(Some(Duration::from_secs(10)))
            .build();
        Ok(Smtp(transport))
    }
}

#[async_trait]
impl Mailer for Smtp {
    async fn send(&self, message: Message) -> Result<(), NotSent> {
        self.0.send(message).await.map(drop).map_err(|e| {
            if e.is_timeout() {
                NotSent::Unknown(e.to_string())
            } else {
                NotSent::Refused(e.to_string())
            }
        })
    }
}

/// `.eml` files in a folder, one per email.
pub struct Files(AsyncFileTransport<Tokio1Executor>);

impl Files {
    pub fn new(dir: &str) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {dir}: {e}"))?;
        Ok(Files(AsyncFileTransport::new(dir)))
    }
}

#[async_trait]
impl Mailer for Files {
    async fn send(&self, message: Message) -> Result<(), NotSent> {
        self.0
            .send(message)
            .await
            .map(drop)
            .map_err(|e| NotSent::Refused(e.to_string()))
    }
}

/// What a payment event says, for its email.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub approved: bool,
    pub order_id: Uuid,
    pub amount: Money,
    pub item: Option<String>,
    /// The provider's payment id (seed 004's `paymentIntentId`), when it charged.
    pub reference: Option<String>,
    /// Why it did not go through.
    pub reason: Option<String>,
}

pub const APPROVED_SUBJECT: &str = "Payment Successful - Thank You!";
pub const FAILED_SUBJECT: &str = "Payment Failed - Action Required";

impl Outcome {
    pub fn subject(&self) -> &'static str {
        if self.approved {
            APPROVED_SUBJECT
        } else {
            FAILED_SUBJECT
        }
    }

    /// The email to `to` about this outcome, with `id` as its Message-ID (one per event, so a
    /// mail server or reader can tell a copy from another email).
    pub fn message(
        &self,
        id: Uuid,
        from: &Mailbox,
        to: Mailbox,
        name: &str,
    ) -> Result<Message, String> {
        let amount = written(self.amount);
        let item = self.item.as_deref().unwrap_or("your order");
        let reference = self.reference.as_deref().unwrap_or("N/A");
        let (opening, closing) = if self.approved {
            (
                "your payment went through. Thank you!".to_owned(),
                "We are preparing your order.".to_owned(),
            )
        } else {
            (
                format!(
                    "your payment did not go through: {}.",
                    self.reason.as_deref().unwrap_or("the card was declined")
                ),
                "Please check your card or add another one, then order again.".to_owned(),
            )
        };
        let text = format!(
            "Hello {name},\n\n{opening}\n\nAmount: {amount}\nOrder: {}\nItem: {item}\nPayment id: {reference}\n\n{closing}\n",
            self.order_id
        );
        let html = format!(
            "<p>Hello {},</p><p>{}</p><table>\
             <tr><th align=\"left\">Amount</th><td>{}</td></tr>\
             <tr><th align=\"left\">Order</th><td>{}</td></tr>\
             <tr><th align=\"left\">Item</th><td>{}</td></tr>\
             <tr><th align=\"left\">Payment id</th><td>{}</td></tr></table><p>{}</p>",
            escape(name),
            escape(&opening),
            escape(&amount),
            self.order_id,
            escape(item),
            escape(reference),
            escape(&closing),
        );
        Message::builder()
            .from(from.clone())
            .to(to)
            .subject(self.subject())
            .message_id(Some(format!("<{id}@kassa>")))
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| e.to_string())
    }
}

/// An amount as a receipt writes it: every decimal place of its currency, then the currency
/// (`12.50 USD`, `1250 JPY`).
fn written(amount: Money) -> String {
    let places = u32::from(amount.currency().exponent());
    let unit = 10_i64.pow(places);
    let (whole, part) = (amount.minor() / unit, amount.minor() % unit);
    let currency = amount.currency();
    let code = currency.code();
    if places == 0 {
        format!("{whole} {code}")
    } else {
        format!("{whole}.{part:0width$} {code}", width = places as usize)
    }
}

/// Text as HTML shows it literally.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use kassa_contracts::Currency;

    use super::*;

    #[test]
    fn receipts_write_every_decimal_place() {
        let money = |minor, code| Money::from_minor(minor, Currency::parse(code).unwrap()).unwrap();
        assert_eq!(written(money(1250, "USD")), "12.50 USD");
        assert_eq!(written(money(5, "USD")), "0.05 USD");
        assert_eq!(written(money(1250, "JPY")), "1250 JPY");
    }
}
