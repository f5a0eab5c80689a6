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

    /// Every currency kassa supports, in code order.
    pub fn all() -> impl Iterator<Item = Currency> {
        CURRENCIES.iter().map(|(c, exponent)| {
            let b = c.as_bytes();
            Currency {
                code: [b[0], b[1], b[2]],
                exponent: *exponent,
            }
        })
    }

    /// Looks a currency up by its code, in any letter case.
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        let upper = code.trim().to_ascii_uppercase();
        Currency::all()
            .find(|c| c.code() == upper)
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

impl std::str::FromStr for Currency {
    type Err = MoneyError;
    fn from_str(code: &str) -> Result<Self, Self::Err> {
        Currency::parse(code)
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
        check_minor(minor, currency.exponent)?;
        Ok(Money { minor, currency })
    }

    /// Parses a decimal amount as written in JSON or a form (`999`, `150.50`, `1e2`), exactly.
    pub fn parse(text: &str, currency: Currency) -> Result<Self, MoneyError> {
        let minor = parse_minor(text, currency.exponent)?;
        Ok(Money { minor, currency })
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

/// Parses a positive decimal amount (`999`, `150.50`, `1e2`) exactly, as minor units at
/// `exponent` decimal places: more places than that, zero or less, or [`MAX_MAJOR_UNITS`] or more
/// is refused.
pub fn parse_minor(text: &str, exponent: u8) -> Result<i64, MoneyError> {
    let text = text.trim();
    let (mantissa, exp10) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], parse_exponent(&text[i + 1..])?),
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
    // Trailing zeros carry no precision and leading zeros no value: 0150.50 is 15050 * 10^-2,
    // that is 1505 * 10^-1.
    let joined = format!("{int_part}{frac_part}");
    let without_trailing = joined.trim_end_matches('0');
    let trailing_zeros = joined.len() - without_trailing.len();
    let significant = without_trailing.trim_start_matches('0');
    if significant.is_empty() || negative {
        return Err(MoneyError::NotPositive);
    }
    let too_precise = MoneyError::TooPrecise(exponent);
    // The amount is `significant * 10^scale`. The exponent is client input of any size, so
    // every step is checked; an overflow upwards can only come from a huge positive exponent
    // and one downwards from a huge negative one.
    let scale = exp10
        .checked_add(len_i64(trailing_zeros))
        .ok_or(MoneyError::TooLarge)?
        .checked_sub(len_i64(frac_part.len()))
        .ok_or(too_precise.clone())?;
    // In minor units the amount is `significant * 10^shift`.
    let shift = scale
        .checked_add(i64::from(exponent))
        .ok_or(MoneyError::TooLarge)?;
    if shift < 0 {
        return Err(too_precise);
    }
    // 19 digits overflow i64; anything that long is far above the maximum anyway.
    let total_digits = len_i64(significant.len())
        .checked_add(shift)
        .ok_or(MoneyError::TooLarge)?;
    if total_digits > 18 {
        return Err(MoneyError::TooLarge);
    }
    let base: i64 = significant.parse().map_err(|_| MoneyError::TooLarge)?;
    let minor = u32::try_from(shift)
        .ok()
        .and_then(|shift| 10_i64.checked_pow(shift))
        .and_then(|factor| base.checked_mul(factor))
        .ok_or(MoneyError::TooLarge)?;
    check_minor(minor, exponent)?;
    Ok(minor)
}

/// Whether `minor` units at `exponent` places are an amount kassa takes: above zero, below
/// [`MAX_MAJOR_UNITS`].
fn check_minor(minor: i64, exponent: u8) -> Result<(), MoneyError> {
    if minor <= 0 {
        return Err(MoneyError::NotPositive);
    }
    if minor / 10_i64.pow(u32::from(exponent)) >= MAX_MAJOR_UNITS {
        return Err(MoneyError::TooLarge);
    }
    Ok(())
}

/// Reads the exponent after the `e` of a decimal: an optional sign, then digits.
///
/// An exponent beyond `i64` saturates rather than failing as "not a number": `1e99999999999999999999`
/// is a number, just far too large, and at that size only the sign decides the verdict (too
/// large, or too precise), which a saturated value keeps.
fn parse_exponent(text: &str) -> Result<i64, MoneyError> {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(MoneyError::NotANumber);
    }
    let magnitude = digits
        .bytes()
        .try_fold(0_i64, |acc, b| {
            acc.checked_mul(10)?.checked_add(i64::from(b - b'0'))
        })
        .unwrap_or(i64::MAX);
    Ok(if negative { -magnitude } else { magnitude })
}

/// A string length as `i64`; no string in memory is longer than `i64::MAX` bytes, and if one
/// were, saturating keeps the arithmetic that uses it checked.
fn len_i64(len: usize) -> i64 {
    i64::try_from(len).unwrap_or(i64::MAX)
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
    fn huge_exponents_are_refused_without_overflow() {
        assert_eq!(usd("1e2147483647"), Err(MoneyError::TooLarge));
        assert_eq!(usd("10e2147483647"), Err(MoneyError::TooLarge));
        assert_eq!(usd("1E99999999999999999999"), Err(MoneyError::TooLarge));
        assert_eq!(usd("1e+99999999999999999999"), Err(MoneyError::TooLarge));
        assert_eq!(usd("1.5e2147483647"), Err(MoneyError::TooLarge));
        assert_eq!(usd("1e-2147483648"), Err(MoneyError::TooPrecise(2)));
        assert_eq!(usd("1.5e-2147483648"), Err(MoneyError::TooPrecise(2)));
        assert_eq!(
            usd("1e-99999999999999999999"),
            Err(MoneyError::TooPrecise(2))
        );
        // Zero stays zero however it is scaled.
        assert_eq!(usd("0e2147483647"), Err(MoneyError::NotPositive));
        assert_eq!(usd("0e-99999999999999999999"), Err(MoneyError::NotPositive));
        // A huge exponent cancelled by many fraction digits is still an exact small amount.
        assert_eq!(usd("100e-2"), Ok(100));
        assert_eq!(usd("1e-0"), Ok(100));
        assert_eq!(usd("1e+2"), Ok(10_000));
        assert_eq!(usd("1e2x"), Err(MoneyError::NotANumber));
        assert_eq!(usd("1e--2"), Err(MoneyError::NotANumber));
        assert_eq!(usd("1e+"), Err(MoneyError::NotANumber));
    }

    /// A small xorshift64 so the round trip below is random-looking yet the same on every run.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, bound: u64) -> u64 {
            self.next() % bound
        }
    }

    #[test]
    fn random_amounts_round_trip_through_their_decimal_text() {
        let currencies: Vec<Currency> = CURRENCIES
            .iter()
            .map(|(code, _)| Currency::parse(code).unwrap())
            .collect();
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for _ in 0..100_000 {
            let currency = currencies[rng.below(currencies.len() as u64) as usize];
            let exponent = currency.exponent();
            let max_minor = MAX_MAJOR_UNITS as u64 * 10_u64.pow(exponent as u32) - 1;
            // Half the cases are small amounts, where short texts and leading zeros live.
            let bound = if rng.below(2) == 0 { 10_000 } else { max_minor };
            let minor = 1 + rng.below(bound) as i64;
            let plain = decimal_string(minor, exponent);
            let padded = if plain.contains('.') {
                format!("{plain}{}", "0".repeat(rng.below(4) as usize))
            } else {
                format!("{plain}.{}", "0".repeat(1 + rng.below(3) as usize))
            };
            // `minor` followed by zeros, scaled back down: 1505 at 2 may read 150500e-4.
            let extra = rng.below(5) as usize;
            let scientific = format!(
                "{minor}{}{}-{}",
                "0".repeat(extra),
                if rng.below(2) == 0 { 'e' } else { 'E' },
                exponent as usize + extra
            );
            for text in [&plain, &padded, &scientific] {
                let parsed = Money::parse(text, currency).map(|m| m.minor());
                assert_eq!(parsed, Ok(minor), "{text} in {currency}");
            }
            assert_eq!(
                Money::parse(&plain, currency).unwrap().to_decimal_string(),
                plain
            );
        }
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
