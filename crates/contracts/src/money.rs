//! Exact money: integer minor units and an ISO 4217 currency, never floating point.
//!
//! The API speaks the seeds' decimal amounts (`999`, `150.50`); they are parsed from the JSON
//! number's own text, so `0.3` is thirty cents and not `0.30000000000000004`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The largest amount kassa accepts in one payment, in major units. Anything above is a typo or
/// an attack, not a sale.
pub const MAX_MAJOR_UNITS: i64 = 1_000_000_000;

/// An ISO 4217 currency kassa knows how to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency {
    code: [u8; 3],
    exponent: u8,
}

/// Currencies with their number of minor-unit digits (ISO 4217).
const CURRENCIES: &[(&str, u8)] = &[
    ("AUD", 2),
    ("BRL", 2),
    ("CAD", 2),
    ("CHF", 2),
    ("CLP", 0),
    ("CNY", 2),
    ("CZK", 2),
    ("DKK", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("HKD", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("INR", 2),
    ("JPY", 0),
    ("KRW", 0),
    ("KWD", 3),
    ("MXN", 2),
    ("MYR", 2),
    ("NOK", 2),
    ("NZD", 2),
    ("PHP", 2),
    ("PLN", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("THB", 2),
    ("TRY", 2),
    ("USD", 2),
    ("VND", 0),
    ("ZAR", 2),
];

impl Currency {
    pub const USD: Currency = Currency {
        code: *b"USD",
        exponent: 2,
    };

    /// Looks a currency up by its code, in any letter case.
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        let upper = code.trim().to_ascii_uppercase();
        CURRENCIES
            .iter()
            .find(|(c, _)| *c == upper)
            .map(|(c, exponent)| {
                let b = c.as_bytes();
                Currency {
                    code: [b[0], b[1], b[2]],
                    exponent: *exponent,
                }
            })
            .ok_or(MoneyError::UnknownCurrency)
    }

    pub fn code(&self) -> &str {
        // The code is always three ASCII letters from the table above.
        std::str::from_utf8(&self.code).unwrap_or("XXX")
    }

    /// Digits after the decimal point.
    pub fn exponent(&self) -> u8 {
        self.exponent
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Currency::parse(&value)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.code().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Why an amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("must be a decimal number such as 150.50")]
    NotANumber,
    #[error("must be greater than zero")]
    NotPositive,
    #[error("has more decimal places than the currency allows ({0})")]
    TooPrecise(u8),
    #[error("is larger than the largest accepted amount ({MAX_MAJOR_UNITS})")]
    TooLarge,
    #[error("is not a known ISO 4217 currency code")]
    UnknownCurrency,
}

/// A positive amount of one currency, held as integer minor units (cents).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    minor: i64,
    currency: Currency,
}

impl Money {
    /// Builds money from minor units read back from storage or an event.
    pub fn from_minor(minor: i64, currency: Currency) -> Result<Self, MoneyError> {
        if minor <= 0 {
            return Err(MoneyError::NotPositive);
        }
        if minor / 10_i64.pow(currency.exponent as u32) >= MAX_MAJOR_UNITS {
            return Err(MoneyError::TooLarge);
        }
        Ok(Money { minor, currency })
    }

    /// Parses a decimal amount as written in JSON or a form (`999`, `150.50`, `1e2`), exactly.
    pub fn parse(text: &str, currency: Currency) -> Result<Self, MoneyError> {
        let text = text.trim();
        let (mantissa, exp10) = match text.find(['e', 'E']) {
            Some(i) => {
                let exp: i32 = text[i + 1..].parse().map_err(|_| MoneyError::NotANumber)?;
                (&text[..i], exp)
            }
            None => (text, 0),
        };
        let (negative, digits) = match mantissa.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, mantissa),
        };
        let (int_part, frac_part) = match digits.split_once('.') {
            Some((i, f)) => (i, f),
            None => (digits, ""),
        };
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int_part.is_empty() || !all_digits(int_part) || !all_digits(frac_part) {
            return Err(MoneyError::NotANumber);
        }
        if digits.contains('.') && frac_part.is_empty() {
            return Err(MoneyError::NotANumber);
        }
        // Significant digits and the power of ten they are scaled by.
        let mut significant: String = format!("{int_part}{frac_part}");
        let mut scale: i32 = exp10 - frac_part.len() as i32;
        // Trailing zeros carry no precision: 150.50 is 15050 * 10^-2 = 1505 * 10^-1.
        while significant.len() > 1 && significant.ends_with('0') {
            significant.pop();
            scale += 1;
        }
        let significant = significant.trim_start_matches('0');
        if significant.is_empty() {
            return Err(MoneyError::NotPositive);
        }
        if negative {
            return Err(MoneyError::NotPositive);
        }
        let exponent = currency.exponent as i32;
        if scale < -exponent {
            return Err(MoneyError::TooPrecise(currency.exponent));
        }
        let shift = scale + exponent;
        // 19 digits overflow i64; anything that long is far above the maximum anyway.
        if significant.len() as i32 + shift > 18 {
            return Err(MoneyError::TooLarge);
        }
        let base: i64 = significant.parse().map_err(|_| MoneyError::TooLarge)?;
        let minor = base
            .checked_mul(10_i64.pow(shift as u32))
            .ok_or(MoneyError::TooLarge)?;
        Money::from_minor(minor, currency)
    }

    pub fn minor(&self) -> i64 {
        self.minor
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// The amount as the shortest exact decimal: `999`, `150.5`, `0.3`.
    pub fn to_decimal_string(&self) -> String {
        decimal_string(self.minor, self.currency.exponent)
    }

    /// The amount as a JSON number with exactly the digits it has.
    pub fn to_json_number(&self) -> Box<serde_json::value::RawValue> {
        raw_number(self.minor, self.currency.exponent)
    }
}

/// Formats minor units as the shortest exact decimal string (`-12.5` for -1250 at exponent 2).
pub fn decimal_string(minor: i64, exponent: u8) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    let unit = 10_u64.pow(exponent as u32);
    let (int, frac) = (abs / unit, abs % unit);
    if frac == 0 {
        return format!("{sign}{int}");
    }
    let frac = format!("{frac:0width$}", width = exponent as usize);
    format!("{sign}{int}.{}", frac.trim_end_matches('0'))
}

/// A JSON number holding exactly the decimal value of `minor` at `exponent`.
pub fn raw_number(minor: i64, exponent: u8) -> Box<serde_json::value::RawValue> {
    // A formatted integer or decimal is always valid JSON number text.
    serde_json::value::RawValue::from_string(decimal_string(minor, exponent))
        .unwrap_or_else(|_| serde_json::value::RawValue::from_string("0".into()).expect("zero"))
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.to_decimal_string(), self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(s: &str) -> Result<i64, MoneyError> {
        Money::parse(s, Currency::USD).map(|m| m.minor())
    }

    #[test]
    fn parses_the_seed_amounts_exactly() {
        assert_eq!(usd("999"), Ok(99_900));
        assert_eq!(usd("150.50"), Ok(15_050));
        assert_eq!(usd("150.5"), Ok(15_050));
        assert_eq!(usd("0.3"), Ok(30));
        assert_eq!(usd("0.30000"), Ok(30));
        assert_eq!(usd("1e2"), Ok(10_000));
        assert_eq!(usd("1.5E1"), Ok(1_500));
        assert_eq!(usd("282.0"), Ok(28_200));
        assert_eq!(usd("12345e-2"), Ok(12_345));
    }

    #[test]
    fn refuses_what_cannot_be_money() {
        assert_eq!(usd("0.001"), Err(MoneyError::TooPrecise(2)));
        assert_eq!(usd("0.30000000000000004"), Err(MoneyError::TooPrecise(2)));
        assert_eq!(usd("0"), Err(MoneyError::NotPositive));
        assert_eq!(usd("0.00"), Err(MoneyError::NotPositive));
        assert_eq!(usd("-5"), Err(MoneyError::NotPositive));
        assert_eq!(usd("1e300"), Err(MoneyError::TooLarge));
        assert_eq!(usd("1000000000"), Err(MoneyError::TooLarge));
        assert_eq!(usd("999999999.99"), Ok(99_999_999_999));
        assert_eq!(usd("12."), Err(MoneyError::NotANumber));
        assert_eq!(usd(".5"), Err(MoneyError::NotANumber));
        assert_eq!(usd("abc"), Err(MoneyError::NotANumber));
        assert_eq!(usd("1e"), Err(MoneyError::NotANumber));
        assert_eq!(usd(""), Err(MoneyError::NotANumber));
    }

    #[test]
    fn currencies_set_the_precision() {
        let jpy = Currency::parse("jpy").unwrap();
        assert_eq!(Money::parse("500", jpy).unwrap().minor(), 500);
        assert_eq!(Money::parse("500.5", jpy), Err(MoneyError::TooPrecise(0)));
        let kwd = Currency::parse("KWD").unwrap();
        assert_eq!(Money::parse("1.234", kwd).unwrap().minor(), 1_234);
        assert_eq!(Currency::parse("XYZ"), Err(MoneyError::UnknownCurrency));
    }

    #[test]
    fn formats_back_to_the_same_decimal() {
        for text in ["999", "150.5", "0.3", "0.01", "10.1", "999999999.99"] {
            let m = Money::parse(text, Currency::USD).unwrap();
            assert_eq!(m.to_decimal_string(), text);
            assert_eq!(m.to_json_number().get(), text);
        }
        assert_eq!(decimal_string(-1250, 2), "-12.5");
    }

    #[test]
    fn a_tenth_plus_two_tenths_is_three_tenths() {
        let a = Money::parse("0.1", Currency::USD).unwrap();
        let b = Money::parse("0.2", Currency::USD).unwrap();
        let sum = Money::from_minor(a.minor() + b.minor(), Currency::USD).unwrap();
        assert_eq!(sum.to_decimal_string(), "0.3");
    }
}
