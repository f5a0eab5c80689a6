//! Rules for the text fields people type (names, emails, phone numbers), each answering a 400
//! that names the field. A record's `validate` calls them; its OpenAPI schema states the same
//! rules (`TEXT_PATTERN`, `PHONE_PATTERN`, `format = Email` and the lengths), so a client that
//! follows the document is never refused.

use crate::http::ApiError;

/// What a non-blank text must match: one character that is not white space.
pub const TEXT_PATTERN: &str = r"\S";

/// E.164: a plus, then up to 15 digits, the first not zero (country codes start at 1).
pub const PHONE_PATTERN: &str = r"^\+[1-9][0-9]{6,14}$";

/// The longest address SMTP carries (RFC 5321: 254 octets in a path, less its brackets).
pub const EMAIL_MAX: usize = 254;

/// White space as JSON Schema patterns read `\s` (ECMA-262: the Zs category, tab, vertical tab,
/// form feed, the byte order mark and the line terminators), so that a value the documents'
/// `\S` pattern admits is never refused as blank. (Rust's `trim` also strips U+0085 and
/// U+180E, which `\S` matches.)
fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202f}'
                | '\u{205f}'
                | '\u{3000}'
                | '\u{feff}'
    )
}

/// Trims `value` and refuses it blank or longer than `max` characters.
pub fn text(param: &str, value: &mut String, max: usize) -> Result<(), ApiError> {
    let trimmed = value.trim_matches(is_space);
    if trimmed.is_empty() {
        return Err(ApiError::invalid(
            param,
            "blank_field",
            format!("`{param}` must not be blank."),
        ));
    }
    if trimmed.chars().count() > max {
        return Err(ApiError::invalid(
            param,
            "field_too_long",
            format!("`{param}` must be at most {max} characters."),
        ));
    }
    if trimmed.len() != value.len() {
        *value = trimmed.to_owned();
    }
    Ok(())
}

/// An address of the form `local@domain`, stored in lower case (so that two
/// spellings of one address are one): a dot-atom local part (RFC 5322) and a domain of at
/// least two labels of letters, digits and inner hyphens.
pub fn email(param: &str, value: &mut String) -> Result<(), ApiError> {
    // Not trimmed: white space around an address is no address (the document's `format: email`
    // says so too).
    let address = value.to_ascii_lowercase();
    if !is_email(&address) {
        return Err(ApiError::invalid(
            param,
            "invalid_email",
            format!(
                "`{param}` must be an email address such as ada@example.com (at most {EMAIL_MAX} characters)."
            ),
        ));
    }
    *value = address;
    Ok(())
}

fn is_email(address: &str) -> bool {
    if address.len() > EMAIL_MAX {
        return false;
    }
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(atext));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && domain.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.chars().any(|c| c.is_ascii_alphabetic()));
    local_ok && domain_ok
}

/// A phone number in E.164 (`+4915112345678`): written that way, nothing around it.
pub fn phone(param: &str, value: &str) -> Result<(), ApiError> {
    let digits = value.strip_prefix('+').unwrap_or("");
    let ok = (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            param,
            "invalid_phone_number",
            format!(
                "`{param}` must be in E.164 form: a plus and 7 to 15 digits with the country \
                 code, no spaces (+4915112345678)."
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for good in [
            "ada@example.com",
            "Ada.Lovelace+gym@Example.CO.uk",
            "o'neil@a-b.example",
            "x@y.io",
        ] {
            let mut v = good.to_owned();
            email("email", &mut v).unwrap_or_else(|e| panic!("{good}: {}", e.detail));
            assert_eq!(v, good.to_ascii_lowercase());
        }
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "ada@@example.com",
            "a da@example.com",
            " ada@example.com",
            "ada.@example.com",
            "ada@-example.com",
            "ada@example..com",
            "ada@example.123",
        ] {
            let mut v = bad.to_owned();
            let e = email("email", &mut v).unwrap_err();
            assert_eq!(
                (e.code, e.param.as_deref()),
                ("invalid_email", Some("email")),
                "{bad}"
            );
        }
        let mut long = format!("{}@example.com", "a".repeat(250));
        assert!(email("email", &mut long).is_err());
    }

    #[test]
    fn phones() {
        for good in ["+4915112345678", "+12025550123", "+3531234567"] {
            phone("phoneNumber", good).unwrap();
        }
        for bad in [
            "4915112345678",
            "+0123456789",
            "+49 151 1234",
            "+123",
            "+1234567890123456",
            "+49151x2345678",
            "",
        ] {
            assert_eq!(
                phone("phoneNumber", bad).unwrap_err().code,
                "invalid_phone_number",
                "{bad}"
            );
        }
        let pattern = PHONE_PATTERN;
        assert!(pattern.starts_with('^') && pattern.ends_with('$'));
    }

    #[test]
    fn texts() {
        // NEL is no white space to `\S`, so it is a name (if a strange one).
        let mut v = "\u{85}".to_owned();
        text("name", &mut v, 10).unwrap();
        let mut v = "\u{3000}\u{feff}".to_owned();
        assert_eq!(text("name", &mut v, 10).unwrap_err().code, "blank_field");
        let mut v = "  Yoga  ".to_owned();
        text("name", &mut v, 10).unwrap();
        assert_eq!(v, "Yoga");
        assert_eq!(
            text("name", &mut " \t".to_owned(), 10).unwrap_err().code,
            "blank_field"
        );
        assert_eq!(
            text("name", &mut "ééééééééééé".to_owned(), 10)
                .unwrap_err()
                .code,
            "field_too_long"
        );
        text("name", &mut "éééééééééé".to_owned(), 10).unwrap();
    }
}

/// The codes these rules answer with; a field type's deserialising error is written
/// `"<code>: <sentence>"` and `http::parse_json` turns it into a problem with that code, naming
/// the field.
pub(crate) const CODES: [&str; 7] = [
    "blank_field",
    "invalid_amount",
    "invalid_currency",
    "field_too_long",
    "invalid_email",
    "invalid_phone_number",
    "number_out_of_range",
];

/// A rule's refusal as a deserialising error that keeps its code; the sentence loses its
/// leading "`param` " since the path names the field.
fn refusal<E: serde::de::Error>(e: ApiError) -> E {
    let sentence = e.detail.strip_prefix("`` ").unwrap_or(&e.detail);
    E::custom(format!("{}: {}", e.code, sentence.trim_end_matches('.')))
}

fn string_schema() -> utoipa::openapi::ObjectBuilder {
    utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::schema::Type::String)
}

/// Text a person types (a name, a department): trimmed, not blank, at most `MAX` characters.
/// Its schema says the same (`minLength` 1, `maxLength`, a `\S` pattern).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Text<const MAX: usize>(String);

impl<const MAX: usize> std::ops::Deref for Text<MAX> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de, const MAX: usize> serde::Deserialize<'de> for Text<MAX> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut value = String::deserialize(d)?;
        text("", &mut value, MAX).map_err(refusal)?;
        Ok(Text(value))
    }
}

impl<const MAX: usize> utoipa::PartialSchema for Text<MAX> {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        string_schema()
            .min_length(Some(1))
            .max_length(Some(MAX))
            .pattern(Some(TEXT_PATTERN))
            .into()
    }
}

impl<const MAX: usize> utoipa::ToSchema for Text<MAX> {
    /// One component per length: `Text200`, `Text2000`.
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Owned(format!("Text{MAX}"))
    }
}

/// A string type that only holds what `check` accepts (which may normalise it), with the
/// schema that says so.
macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident, $check:expr, $schema:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let mut value = String::deserialize(d)?;
                let check: fn(&mut String) -> Result<(), ApiError> = $check;
                check(&mut value).map_err(refusal)?;
                Ok($name(value))
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                $schema.into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

checked_string!(
    /// An email address as [`email`] reads it, kept in lower case.
    Email,
    |value| email("", value),
    string_schema()
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::Email,
        )))
        .max_length(Some(EMAIL_MAX))
        .examples([serde_json::json!("ada@example.com")])
);

checked_string!(
    /// A phone number in E.164, as [`phone`] reads it.
    Phone,
    |value| phone("", value),
    string_schema()
        .pattern(Some(PHONE_PATTERN))
        .examples([serde_json::json!("+4915112345678")])
);

/// A whole number from `MIN` to `MAX`, written as JSON writes numbers: `20` and `20.0` are the
/// same number (as JSON Schema's `integer` says), `20.5` is not whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Whole<const MIN: i64, const MAX: i64>(i64);

impl<const MIN: i64, const MAX: i64> Whole<MIN, MAX> {
    pub fn get(self) -> i64 {
        self.0
    }
}

impl<'de, const MIN: i64, const MAX: i64> serde::Deserialize<'de> for Whole<MIN, MAX> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let number = serde_json::Number::deserialize(d)?;
        let whole = number.as_i64().or_else(|| {
            number
                .as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        });
        match whole {
            Some(n) if (MIN..=MAX).contains(&n) => Ok(Whole(n)),
            _ => Err(serde::de::Error::custom(format!(
                "number_out_of_range: must be a whole number from {MIN} to {MAX}"
            ))),
        }
    }
}

impl<const MIN: i64, const MAX: i64> utoipa::PartialSchema for Whole<MIN, MAX> {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Integer)
            .minimum(Some(MIN))
            .maximum(Some(MAX))
            .into()
    }
}

impl<const MIN: i64, const MAX: i64> utoipa::ToSchema for Whole<MIN, MAX> {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Owned(format!("Whole{MIN}To{MAX}"))
    }
}

/// An amount of money with at most `PLACES` decimal places, above zero and below
/// [`MAX_MAJOR_UNITS`](kassa_contracts::money::MAX_MAJOR_UNITS), held exactly as minor units
/// (`150.50` with two places is 15050). Written back as the shortest exact decimal.
///
/// It reads the number serde_json gives it, a double (this build has no arbitrary precision):
/// exact for every amount it accepts (at most 15 significant digits), but a text with more
/// digits than a double holds (`0.100000000000000001`) arrives already rounded. So a body's
/// amount must be checked on its own text before it is parsed, as the resource kit does for
/// every `Field::amount`; elsewhere read amounts with [`crate::http::parse_amount`] from a
/// `RawValue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount<const PLACES: u8>(i64);

impl<const PLACES: u8> Amount<PLACES> {
    /// The amount in minor units (hundredths with two places).
    pub fn minor(self) -> i64 {
        self.0
    }

    /// Reads `text`, a JSON number's text, exactly.
    pub fn parse(text: &str) -> Result<Self, kassa_contracts::MoneyError> {
        kassa_contracts::money::parse_minor(text, PLACES).map(Amount)
    }
}

impl<'de, const PLACES: u8> serde::Deserialize<'de> for Amount<PLACES> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let number = serde_json::Number::deserialize(d)?;
        Amount::parse(&number.to_string())
            .map_err(|e| serde::de::Error::custom(format!("invalid_amount: {e}")))
    }
}

impl<const PLACES: u8> serde::Serialize for Amount<PLACES> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(&*kassa_contracts::money::raw_number(self.0, PLACES), s)
    }
}

impl<const PLACES: u8> utoipa::PartialSchema for Amount<PLACES> {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::http::openapi::amount_input(PLACES).into()
    }
}

impl<const PLACES: u8> utoipa::ToSchema for Amount<PLACES> {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Owned(format!("Amount{PLACES}Places"))
    }
}
