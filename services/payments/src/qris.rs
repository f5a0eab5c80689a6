//! QRIS payloads: the EMVCo merchant-presented QR code (EMV QRCPS-MPM) a customer scans with
//! their banking or wallet app to pay one order. Dynamic (point of initiation `12`): it carries
//! the amount, so it is good for this payment only. Each data object is an ID, a two-digit
//! length and a value; the payload ends with its CRC (ID `63`), CRC-16/CCITT-FALSE over
//! everything before it, `6304` included.

use kassa_contracts::Money;

/// The merchant a payload names, from configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merchant {
    /// Up to 25 characters (ID 59).
    pub name: String,
    /// Up to 15 characters (ID 60).
    pub city: String,
    /// ISO 3166-1 alpha-2 (ID 58): `ID`.
    pub country: String,
    /// The national merchant id (QRIS's NMID) under the QRIS globally unique identifier (ID 51).
    pub merchant_id: String,
    /// ISO 18245 merchant category code (ID 52): `5814`, fast food.
    pub category: String,
}

/// Why a merchant's configuration cannot make payloads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidMerchant(pub String);

impl Merchant {
    /// Checks every field against what the EMVCo format holds.
    pub fn checked(self) -> Result<Self, InvalidMerchant> {
        let printable = |s: &str| s.chars().all(|c| (' '..='~').contains(&c));
        let field = |name: &str, value: &str, max: usize| {
            if value.trim().is_empty() || value.chars().count() > max || !printable(value) {
                Err(InvalidMerchant(format!(
                    "the QRIS merchant {name} must be 1 to {max} printable ASCII characters, not `{value}`"
                )))
            } else {
                Ok(())
            }
        };
        field("name", &self.name, 25)?;
        field("city", &self.city, 15)?;
        field("id", &self.merchant_id, 30)?;
        if self.country.len() != 2 || !self.country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(InvalidMerchant(format!(
                "the QRIS country must be two capital letters (ISO 3166-1), not `{}`",
                self.country
            )));
        }
        if self.category.len() != 4 || !self.category.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidMerchant(format!(
                "the QRIS merchant category must be four digits (ISO 18245), not `{}`",
                self.category
            )));
        }
        Ok(self)
    }
}

/// ISO 4217 numeric codes of the currencies a payload can name.
fn numeric(code: &str) -> Option<&'static str> {
    Some(match code {
        "IDR" => "360",
        "USD" => "840",
        "EUR" => "978",
        "GBP" => "826",
        "SGD" => "702",
        "MYR" => "458",
        "THB" => "764",
        "PHP" => "608",
        "VND" => "704",
        "JPY" => "392",
        "AUD" => "036",
        "INR" => "356",
        "CNY" => "156",
        "HKD" => "344",
        "KRW" => "410",
        _ => return None,
    })
}

/// One data object: ID, two-digit length, value (at most 99 characters).
fn object(id: &str, value: &str) -> String {
    debug_assert!(
        value.len() <= 99,
        "an EMVCo value holds at most 99 characters"
    );
    format!("{id}{:02}{value}", value.len())
}

/// CRC-16/CCITT-FALSE: polynomial 0x1021, initial value 0xFFFF, no reflection, no final XOR.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for byte in data {
        crc ^= u16::from(*byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// An amount with every decimal place of its currency (`7.00`, `15000` in yen), as EMVCo
/// writes transaction amounts.
fn fixed_places(amount: Money) -> String {
    let exponent = u32::from(amount.currency().exponent());
    let unit = 10u64.pow(exponent);
    let minor = amount.minor().unsigned_abs();
    if exponent == 0 {
        return minor.to_string();
    }
    format!(
        "{}.{:0width$}",
        minor / unit,
        minor % unit,
        width = exponent as usize
    )
}

/// The payload for paying `amount` to `merchant`, `reference` (the payment's id, at most 25
/// characters kept) naming it in the additional data (ID 62, reference label 05). `None` when
/// the currency has no ISO numeric code here.
pub fn payload(merchant: &Merchant, amount: Money, reference: &str) -> Option<String> {
    let currency = numeric(amount.currency().code())?;
    let account = [
        object("00", "ID.CO.QRIS.WWW"),
        object("02", &merchant.merchant_id),
        object("03", "UMI"),
    ]
    .concat();
    let reference: String = reference.chars().filter(|c| *c != '-').take(25).collect();
    let mut text = [
        object("00", "01"),
        object("01", "12"),
        object("51", &account),
        object("52", &merchant.category),
        object("53", currency),
        object("54", &fixed_places(amount)),
        object("58", &merchant.country),
        object("59", &merchant.name),
        object("60", &merchant.city),
        object("62", &object("05", &reference)),
    ]
    .concat();
    text.push_str("6304");
    let crc = crc16(text.as_bytes());
    text.push_str(&format!("{crc:04X}"));
    Some(text)
}

#[cfg(test)]
mod tests {
    use kassa_contracts::Currency;

    use super::*;

    #[test]
    fn the_crc_is_ccitt_false() {
        // The check value of CRC-16/CCITT-FALSE.
        assert_eq!(crc16(b"123456789"), 0x29B1);
        assert_eq!(crc16(b""), 0xFFFF);
    }

    #[test]
    fn a_merchant_is_checked() {
        let good = Merchant {
            name: "Kassa Kiosk".into(),
            city: "Jakarta".into(),
            country: "ID".into(),
            merchant_id: "ID1020000000001".into(),
            category: "5814".into(),
        };
        assert!(good.clone().checked().is_ok());
        for bad in [
            Merchant {
                name: "A name far longer than twenty-five".into(),
                ..good.clone()
            },
            Merchant {
                city: String::new(),
                ..good.clone()
            },
            Merchant {
                country: "IDN".into(),
                ..good.clone()
            },
            Merchant {
                category: "58".into(),
                ..good.clone()
            },
        ] {
            assert!(bad.checked().is_err());
        }
        let idr = Money::from_minor(1_500_050, Currency::parse("IDR").unwrap()).unwrap();
        let text = payload(&good, idr, "0190a0b0-0000-7000-8000-000000000001").unwrap();
        assert!(text.starts_with("000201010212"), "{text}");
        assert!(text.contains("5303360"), "{text}");
        assert!(text.contains("540815000.50"), "{text}");
    }
}
