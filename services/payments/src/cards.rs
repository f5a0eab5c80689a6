//! The cards seed 004's payments are charged to, asked of the users service (which keeps them)
//! with a token of the `service` role. A lookup that gets no answer leaves the payment waiting:
//! it stays PROCESSING, and once its lease runs out it is taken up and looked up again, so
//! users being down delays a payment and never fails it.

use kassa_platform::{
    auth::{self, Secret},
    peer::PeerClient,
};
use serde::Deserialize;
use uuid::Uuid;

/// A saved card as the provider charges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedCard {
    /// Which provider holds it (`simulated`, `stripe`).
    pub provider: String,
    /// The provider's id for it (a Stripe PaymentMethod id).
    pub token: String,
    /// The provider's id for its owner, when the provider keeps one (a Stripe Customer id).
    pub customer: Option<String>,
    /// Its owner's address.
    pub email: String,
}

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(SavedCard),
    /// The customer has no card to charge: the payment is declined with this reason.
    Missing(String),
    /// No answer now: the payment waits and is tried again.
    Unavailable(String),
}

pub struct Cards {
    users: PeerClient,
    secret: Option<Secret>,
}

#[derive(Deserialize)]
struct Answer {
    data: Card,
    email: String,
}

#[derive(Deserialize)]
struct Card {
    provider: String,
    provider_token: String,
    #[serde(default)]
    provider_customer: Option<String>,
}

impl Cards {
    pub fn new(users: PeerClient, secret: Option<Secret>) -> Self {
        Cards { users, secret }
    }

    /// The card `user_id`'s orders are charged to.
    pub async fn of(&self, user_id: Option<Uuid>) -> Lookup {
        let Some(user_id) = user_id else {
            return Lookup::Missing("the payment names no customer".into());
        };
        let Some(secret) = &self.secret else {
            return Lookup::Unavailable(
                "no token secret is configured (KASSA_TOKEN_SECRET), so users cannot be asked"
                    .into(),
            );
        };
        let token = auth::service_token(secret);
        let path = format!("/payment-methods/get/{user_id}");
        match self.users.get(&path, Some(&token)).await {
            Err(e) => Lookup::Unavailable(e.to_string()),
            Ok(answer) if answer.status.is_success() => {
                match serde_json::from_slice::<Answer>(&answer.body) {
                    Ok(a) => Lookup::Found(SavedCard {
                        provider: a.data.provider,
                        token: a.data.provider_token,
                        customer: a.data.provider_customer,
                        email: a.email,
                    }),
                    Err(e) => {
                        Lookup::Unavailable(format!("users answered a card kassa cannot read: {e}"))
                    }
                }
            }
            Ok(answer) if answer.status.as_u16() == 404 => {
                Lookup::Missing("the customer has no saved card".into())
            }
            Ok(answer) => Lookup::Unavailable(format!(
                "users answered {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            )),
        }
    }
}
