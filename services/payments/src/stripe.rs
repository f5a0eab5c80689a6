//! Stripe as the payment provider (`KASSA_PROVIDER=stripe`): a payment is a PaymentIntent,
//! created and confirmed at once with the customer's saved card (off session: the customer is
//! not there to authenticate), in minor units of the order's currency, with the payment's id as
//! Stripe's `Idempotency-Key` so that asking again (a lease taken over) never charges twice.
//! A refund is a Stripe Refund of that PaymentIntent.

use async_trait::async_trait;
use kassa_contracts::Money;
use kassa_platform::stripe::{Stripe, StripeError};
use uuid::Uuid;

use crate::{
    cards::SavedCard,
    domain::ChargeOutcome,
    provider::{Charged, PaymentProvider, RefundError},
};

pub struct StripeGateway {
    stripe: Stripe,
}

impl StripeGateway {
    pub fn new(stripe: Stripe) -> Self {
        StripeGateway { stripe }
    }
}

#[async_trait]
impl PaymentProvider for StripeGateway {
    async fn charge(&self, payment_id: Uuid, amount: Money, card: Option<&SavedCard>) -> Charged {
        let Some(card) = card.filter(|c| c.provider == "stripe") else {
            return Charged::Settled(ChargeOutcome::Failed {
                reason: "no card saved with Stripe to charge: orders without a saved card \
                         (seed 003's) are charged through the simulated provider"
                    .into(),
            });
        };
        let mut form = vec![
            ("amount", amount.minor().to_string()),
            ("currency", amount.currency().code().to_ascii_lowercase()),
            ("payment_method", card.token.clone()),
            ("confirm", "true".into()),
            ("off_session", "true".into()),
            ("metadata[paymentId]", payment_id.to_string()),
        ];
        if let Some(customer) = &card.customer {
            form.push(("customer", customer.clone()));
        }
        let key = format!("charge-{payment_id}");
        match self.stripe.post("payment_intents", &form, Some(&key)).await {
            Ok(intent) => {
                let id = intent["id"].as_str().unwrap_or_default().to_owned();
                Charged::Settled(match intent["status"].as_str() {
                    Some("succeeded") => ChargeOutcome::Approved { reference: id },
                    // Stripe decides later: the payment waits (its webhook, or the same
                    // PaymentIntent asked about again after the lease, settles it), and keeps
                    // the PaymentIntent's id, which the webhook's event must name.
                    Some("processing") => {
                        return Charged::Waits {
                            reference: Some(id).filter(|id| !id.is_empty()),
                        };
                    }
                    // Anything else needs the customer, who is not there.
                    Some(status) => ChargeOutcome::Declined {
                        reason: intent["last_payment_error"]["message"]
                            .as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| format!("the card needs the customer ({status})")),
                    },
                    None => ChargeOutcome::Failed {
                        reason: "Stripe answered no status".into(),
                    },
                })
            }
            Err(StripeError::Card { message, .. }) => {
                Charged::Settled(ChargeOutcome::Declined { reason: message })
            }
            // A key Stripe refused (rotated), or this charge's Idempotency-Key still in use by
            // a try that timed out: nothing is known about the charge yet, so it waits.
            Err(StripeError::Request {
                status: status @ (401 | 403 | 409),
                message,
            }) => {
                tracing::warn!(payment_id = %payment_id, status, %message, "Stripe refused to answer about a charge now");
                Charged::Waits { reference: None }
            }
            Err(StripeError::Request { status, message }) => {
                Charged::Settled(ChargeOutcome::Failed {
                    reason: format!("Stripe refused the charge ({status}): {message}"),
                })
            }
            Err(StripeError::Unavailable(why)) => {
                tracing::warn!(payment_id = %payment_id, %why, "Stripe did not answer a charge");
                Charged::Waits { reference: None }
            }
        }
    }

    async fn refund(
        &self,
        payment_id: Uuid,
        amount: Money,
        reference: Option<&str>,
    ) -> Result<(), RefundError> {
        let Some(intent) = reference else {
            return Err(RefundError(
                "the payment has no Stripe PaymentIntent to refund".into(),
            ));
        };
        let form = [
            ("payment_intent", intent.to_owned()),
            ("amount", amount.minor().to_string()),
        ];
        self.stripe
            .post("refunds", &form, Some(&format!("refund-{payment_id}")))
            .await
            .map(|_| ())
            .map_err(|e| RefundError(e.to_string()))
    }
}
