//! Payment providers: the port, and the simulated gateway kassa uses by default.
//!
//! The simulated gateway is deterministic, so tests and demos can choose an outcome by amount:
//! it approves, except that an amount whose fractional part is exactly one minor unit (`.01` in
//! USD) is declined, and two minor units (`.02`) fail with a provider error. Its latency and an
//! optional decline rate are configurable; the rate is applied by a hash of the payment id, so
//! asking again about the same payment gives the same answer, as a real provider's idempotency
//! key would. A saved card decides for itself: the simulated vault's token for seed 004's
//! declining test card (4000000000000002) is declined.

use std::time::Duration;

use async_trait::async_trait;
use kassa_contracts::Money;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{cards::SavedCard, domain::ChargeOutcome};

/// A refund the provider would not make.
#[derive(Debug, thiserror::Error)]
#[error("provider refused the refund: {0}")]
pub struct RefundError(pub String);

/// What a provider answered about a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charged {
    /// It is settled: approved, declined or failed.
    Settled(ChargeOutcome),
    /// Not settled yet, or no answer at all: the payment waits and is asked about again (or the
    /// provider's webhook settles it). `reference` is the provider's id for the charge when it
    /// gave one; it is kept with the payment, and only an outcome naming it settles the payment.
    Waits { reference: Option<String> },
}

#[async_trait]
pub trait PaymentProvider: Send + Sync + 'static {
    /// Charges `amount` for `payment_id`, to `card` when the customer saved one (seed 004).
    /// Calling again with the same payment id must not charge twice (the payment id is the
    /// idempotency key).
    async fn charge(&self, payment_id: Uuid, amount: Money, card: Option<&SavedCard>) -> Charged;

    /// Gives back, or voids, the charge of `payment_id` (`reference`: the provider's id for it).
    /// Idempotent like `charge`.
    async fn refund(
        &self,
        payment_id: Uuid,
        amount: Money,
        reference: Option<&str>,
    ) -> Result<(), RefundError>;
}

/// The simulated gateway's settings.
#[derive(Debug, Clone, Default)]
pub struct SimulatedSettings {
    /// How long each charge takes.
    pub latency: Duration,
    /// Share of otherwise approved charges to decline, from 0 to 1.
    pub decline_rate: f64,
}

pub struct SimulatedGateway {
    settings: SimulatedSettings,
}

impl SimulatedGateway {
    pub fn new(settings: SimulatedSettings) -> Self {
        SimulatedGateway { settings }
    }

    /// The outcome, without the latency.
    pub fn decide(&self, payment_id: Uuid, amount: Money) -> ChargeOutcome {
        let exponent = amount.currency().exponent();
        if exponent > 0 {
            match amount.minor() % 10_i64.pow(exponent as u32) {
                1 => {
                    return ChargeOutcome::Declined {
                        reason:
                            "card declined by issuer (simulated: amount ends in one minor unit)"
                                .into(),
                    };
                }
                2 => {
                    return ChargeOutcome::Failed {
                        reason: "provider error (simulated: amount ends in two minor units)".into(),
                    };
                }
                _ => {}
            }
        }
        if self.settings.decline_rate > 0.0
            && unit_interval(payment_id) < self.settings.decline_rate
        {
            return ChargeOutcome::Declined {
                reason: "card declined by issuer (simulated decline rate)".into(),
            };
        }
        ChargeOutcome::Approved {
            reference: format!("sim_{}", payment_id.simple()),
        }
    }
}

/// A number in [0, 1) fixed by the payment id.
fn unit_interval(id: Uuid) -> f64 {
    let digest = Sha256::digest(id.as_bytes());
    let n = u64::from_be_bytes([
        digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
    ]);
    (n >> 11) as f64 / (1u64 << 53) as f64
}

#[async_trait]
impl PaymentProvider for SimulatedGateway {
    async fn charge(&self, payment_id: Uuid, amount: Money, card: Option<&SavedCard>) -> Charged {
        if !self.settings.latency.is_zero() {
            tokio::time::sleep(self.settings.latency).await;
        }
        Charged::Settled(match card {
            Some(card) if card.provider != "simulated" => ChargeOutcome::Failed {
                reason: format!(
                    "the card was saved with the {} provider; this installation charges through \
                     the simulated one",
                    card.provider
                ),
            },
            // The token of seed 004's declining test card (4000000000000002).
            Some(card) if card.token.starts_with("pm_sim_declines_") => ChargeOutcome::Declined {
                reason: "your card was declined (simulated: test card 4000000000000002)".into(),
            },
            _ => self.decide(payment_id, amount),
        })
    }

    async fn refund(
        &self,
        _payment_id: Uuid,
        _amount: Money,
        _reference: Option<&str>,
    ) -> Result<(), RefundError> {
        if !self.settings.latency.is_zero() {
            tokio::time::sleep(self.settings.latency).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use kassa_contracts::Currency;

    use super::*;

    fn usd(s: &str) -> Money {
        Money::parse(s, Currency::USD).unwrap()
    }

    #[test]
    fn the_cents_choose_the_outcome() {
        let g = SimulatedGateway::new(SimulatedSettings::default());
        let id = Uuid::now_v7();
        assert!(matches!(
            g.decide(id, usd("999")),
            ChargeOutcome::Approved { .. }
        ));
        assert!(matches!(
            g.decide(id, usd("150.50")),
            ChargeOutcome::Approved { .. }
        ));
        assert!(matches!(
            g.decide(id, usd("10.01")),
            ChargeOutcome::Declined { .. }
        ));
        assert!(matches!(
            g.decide(id, usd("10.02")),
            ChargeOutcome::Failed { .. }
        ));
        assert!(matches!(
            g.decide(id, usd("10.11")),
            ChargeOutcome::Approved { .. }
        ));
    }

    #[test]
    fn the_decline_rate_is_stable_per_payment_and_roughly_right() {
        let g = SimulatedGateway::new(SimulatedSettings {
            latency: Duration::ZERO,
            decline_rate: 0.25,
        });
        let ids: Vec<Uuid> = (0..4000).map(|_| Uuid::new_v4()).collect();
        let declined = ids
            .iter()
            .filter(|id| matches!(g.decide(**id, usd("5")), ChargeOutcome::Declined { .. }))
            .count();
        assert!(
            (800..1200).contains(&declined),
            "declined {declined} of 4000"
        );
        for id in &ids[..50] {
            assert_eq!(g.decide(*id, usd("5")), g.decide(*id, usd("5")));
        }
    }
}
