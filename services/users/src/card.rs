//! Card numbers as they arrive, and the provider that exchanges them for a token.
//!
//! A number lives only in the request that brings it: it is checked (digits, Luhn, a known
//! length, an expiry not past), handed to the [`Tokenizer`], and dropped. What is kept is the
//! provider's token, the brand, the last four digits and the expiry. [`CardNumber`] has no
//! `Debug`, `Display` or `Serialize` that could print it.

use async_trait::async_trait;
use chrono::{Datelike, NaiveDate};
use kassa_platform::{
    http::ApiError,
    stripe::{Stripe, StripeError},
};
use uuid::Uuid;

/// A card number that passed the checks; readable only by a tokenizer.
pub struct CardNumber(String);

impl CardNumber {
    /// `^\d{13,19}$` (seed 004's rule) with a valid Luhn check digit.
    pub fn parse(param: &str, text: &str) -> Result<Self, ApiError> {
        let digits = text.len();
        if !(13..=19).contains(&digits) || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::invalid(
                param,
                "invalid_card_number",
                format!("`{param}` must be the card's 13 to 19 digits, nothing else."),
            ));
        }
        // The shape is the request's (400); a check digit that does not add up is the card's
        // (422), as no schema can say.
        if !luhn(text) {
            return Err(ApiError::unprocessable(
                "invalid_card_number",
                format!("`{param}` is not a card number: its check digit is wrong."),
            )
            .with_param(param));
        }
        Ok(CardNumber(text.to_owned()))
    }

    /// The digits, for a tokenizer to send to its provider.
    pub fn digits(&self) -> &str {
        &self.0
    }

    pub fn last4(&self) -> &str {
        &self.0[self.0.len() - 4..]
    }

    /// The card network, by its number's leading digits.
    pub fn brand(&self) -> &'static str {
        let prefix = |n: usize| self.0[..n].parse::<u32>().unwrap_or(0);
        match () {
            _ if self.0.starts_with('4') => "visa",
            _ if (51..=55).contains(&prefix(2)) || (2221..=2720).contains(&prefix(4)) => {
                "mastercard"
            }
            _ if matches!(prefix(2), 34 | 37) => "amex",
            _ if prefix(4) == 6011 || prefix(2) == 65 || (644..=649).contains(&prefix(3)) => {
                "discover"
            }
            _ if (3528..=3589).contains(&prefix(4)) => "jcb",
            _ if matches!(prefix(2), 36 | 38 | 39) || (300..=305).contains(&prefix(3)) => "diners",
            _ if prefix(2) == 62 => "unionpay",
            _ => "unknown",
        }
    }
}

fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let twice = d * 2;
                if twice > 9 { twice - 9 } else { twice }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A card's expiry month, as `MM/YY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    pub month: u32,
    pub year: i32,
}

impl Expiry {
    /// `MM/YY`, not before `today`'s month (a card is good through the last day of its month).
    pub fn parse(param: &str, text: &str, today: NaiveDate) -> Result<Self, ApiError> {
        let bad = || {
            ApiError::invalid(
                param,
                "invalid_expiry_date",
                format!("`{param}` must be the card's expiry as MM/YY, such as 04/29."),
            )
        };
        let (mm, yy) = text.split_once('/').ok_or_else(bad)?;
        let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
        if !two_digits(mm) || !two_digits(yy) {
            return Err(bad());
        }
        let month: u32 = mm.parse().map_err(|_| bad())?;
        let year = 2000 + yy.parse::<i32>().map_err(|_| bad())?;
        if !(1..=12).contains(&month) {
            return Err(bad());
        }
        let expiry = Expiry { month, year };
        if (year, month) < (today.year(), today.month()) {
            return Err(ApiError::unprocessable(
                "card_expired",
                format!("The card expired at the end of {text}."),
            )
            .with_param(param));
        }
        Ok(expiry)
    }

    /// `MM/YY`, as seed 004's clients send and read it.
    pub fn text(&self) -> String {
        format!("{:02}/{:02}", self.month, self.year % 100)
    }
}

/// What a provider answers for a card it now holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokenized {
    /// Which provider holds it (`simulated`, `stripe`).
    pub provider: &'static str,
    /// Its id for the card (a Stripe PaymentMethod id).
    pub token: String,
    /// Its id for the card's owner, when it keeps one (a Stripe Customer id).
    pub customer: Option<String>,
}

/// Whose card it is, as the provider is told.
#[derive(Debug, Clone)]
pub struct Owner {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    /// The provider's id for them, from an earlier card.
    pub customer: Option<String>,
}

/// Why a card could not be exchanged for a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenizeError {
    /// The provider refused the card (a 4xx for the client, with the provider's reason).
    Refused(String),
    /// The provider could not be reached or failed (a 503: try again).
    Unavailable(String),
}

/// Exchanges card numbers for a provider's tokens.
#[async_trait]
pub trait Tokenizer: Send + Sync + 'static {
    async fn tokenize(
        &self,
        number: &CardNumber,
        expiry: Expiry,
        cvc: Option<&str>,
        owner: &Owner,
    ) -> Result<Tokenized, TokenizeError>;
}

/// The simulated provider's vault: a token of its own per card, and nothing kept. Seed 004's
/// test numbers keep their meaning: a token for `4000000000000002` says the simulated
/// provider is to decline charges to it.
pub struct SimulatedTokenizer;

/// The test card that Stripe (and the simulated provider) declines.
pub const DECLINING_TEST_CARD: &str = "4000000000000002";

#[async_trait]
impl Tokenizer for SimulatedTokenizer {
    async fn tokenize(
        &self,
        number: &CardNumber,
        _: Expiry,
        _: Option<&str>,
        _: &Owner,
    ) -> Result<Tokenized, TokenizeError> {
        let kind = if number.digits() == DECLINING_TEST_CARD {
            "declines"
        } else {
            "card"
        };
        Ok(Tokenized {
            provider: "simulated",
            token: format!("pm_sim_{kind}_{}", Uuid::new_v4().simple()),
            customer: None,
        })
    }
}

/// Stripe's vault: the card becomes a PaymentMethod attached to the user's Customer (made with
/// their first card), so that it can be charged again and again. Stripe checks the card when it
/// is attached: a card it declines (its test card 4000000000000002) is refused here, when it is
/// saved, as Stripe does.
pub struct StripeTokenizer {
    stripe: Stripe,
}

impl StripeTokenizer {
    pub fn new(stripe: Stripe) -> Self {
        StripeTokenizer { stripe }
    }
}

fn refused(e: StripeError) -> TokenizeError {
    match e {
        StripeError::Unavailable(why) => TokenizeError::Unavailable(why),
        StripeError::Card { message, .. } => TokenizeError::Refused(message),
        StripeError::Request { message, .. } => TokenizeError::Refused(message),
    }
}

#[async_trait]
impl Tokenizer for StripeTokenizer {
    async fn tokenize(
        &self,
        number: &CardNumber,
        expiry: Expiry,
        cvc: Option<&str>,
        owner: &Owner,
    ) -> Result<Tokenized, TokenizeError> {
        let customer = match &owner.customer {
            Some(customer) => customer.clone(),
            None => {
                let form = [
                    ("email", owner.email.clone()),
                    ("name", owner.name.clone()),
                    ("metadata[userId]", owner.user_id.to_string()),
                ];
                // One Customer per user, however often this is asked.
                let key = format!("customer-{}", owner.user_id);
                let created = self.stripe.post("customers", &form, Some(&key)).await;
                created.map_err(refused)?["id"]
                    .as_str()
                    .ok_or_else(|| TokenizeError::Unavailable("a Customer without an id".into()))?
                    .to_owned()
            }
        };
        let mut form = vec![
            ("type", "card".to_owned()),
            ("card[number]", number.digits().to_owned()),
            ("card[exp_month]", expiry.month.to_string()),
            ("card[exp_year]", expiry.year.to_string()),
        ];
        if let Some(cvc) = cvc {
            form.push(("card[cvc]", cvc.to_owned()));
        }
        let method = self.stripe.post("payment_methods", &form, None).await;
        let token = method.map_err(refused)?["id"]
            .as_str()
            .ok_or_else(|| TokenizeError::Unavailable("a PaymentMethod without an id".into()))?
            .to_owned();
        let attach = [("customer", customer.clone())];
        self.stripe
            .post(&format!("payment_methods/{token}/attach"), &attach, None)
            .await
            .map_err(refused)?;
        Ok(Tokenized {
            provider: "stripe",
            token,
            customer: Some(customer),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn numbers_are_checked_by_length_digits_and_luhn() {
        for good in [
            "4242424242424242",
            "4000000000000002",
            "5555555555554444",
            "378282246310005",
        ] {
            assert!(CardNumber::parse("n", good).is_ok(), "{good}");
        }
        for bad in [
            "4242424242424241",
            "424242424242",
            "42424242424242424242",
            "4242 4242 4242 4242",
            "",
        ] {
            assert_eq!(
                CardNumber::parse("n", bad).err().map(|e| e.code),
                Some("invalid_card_number"),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_brand_and_last_four_are_what_is_kept() {
        let brand = |n: &str| CardNumber::parse("n", n).ok().unwrap().brand();
        assert_eq!(brand("4242424242424242"), "visa");
        assert_eq!(brand("5555555555554444"), "mastercard");
        assert_eq!(brand("2223003122003222"), "mastercard");
        assert_eq!(brand("378282246310005"), "amex");
        assert_eq!(brand("6011111111111117"), "discover");
        assert_eq!(brand("3566002020360505"), "jcb");
        assert_eq!(brand("30569309025904"), "diners");
        assert_eq!(brand("6200000000000005"), "unionpay");
        let visa = CardNumber::parse("n", "4242424242424242").ok().unwrap();
        assert_eq!(visa.last4(), "4242");
    }

    #[test]
    fn an_expiry_is_good_through_its_month() {
        let today = day(2026, 12, 2);
        let e = Expiry::parse("e", "12/26", today).unwrap();
        assert_eq!((e.month, e.year, e.text()), (12, 2026, "12/26".to_owned()));
        assert_eq!(Expiry::parse("e", "01/30", today).unwrap().year, 2030);
        assert_eq!(
            Expiry::parse("e", "11/26", today).unwrap_err().code,
            "card_expired"
        );
        for bad in ["13/27", "00/27", "1/27", "01/2027", "0127", "ab/cd", ""] {
            assert_eq!(
                Expiry::parse("e", bad, today).unwrap_err().code,
                "invalid_expiry_date",
                "{bad}"
            );
        }
    }
}
