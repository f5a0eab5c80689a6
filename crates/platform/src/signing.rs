//! HMAC-SHA256 signatures written as lower-case hex: what Stripe signs its webhooks with, and
//! what a registered dispenser signs its validation requests with. Checked in constant time.

use hmac::{KeyInit, Mac};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The signature of the concatenated `parts` under `secret`, as hex.
pub fn sign_hex(secret: &[u8], parts: &[&[u8]]) -> String {
    let Ok(mut mac) = <HmacSha256 as KeyInit>::new_from_slice(secret) else {
        // HMAC takes keys of any length.
        return String::new();
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `hex` is the signature of the concatenated `parts` under `secret`.
pub fn verify_hex(secret: &[u8], parts: &[&[u8]], hex: &str) -> bool {
    let Some(expected) = decode_hex(hex) else {
        return false;
    };
    let Ok(mut mac) = <HmacSha256 as KeyInit>::new_from_slice(secret) else {
        return false;
    };
    for part in parts {
        mac.update(part);
    }
    mac.verify_slice(&expected).is_ok()
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_holds_for_its_secret_and_message_only() {
        // RFC 4231, test case 2.
        let sig = sign_hex(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            sig,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(verify_hex(
            b"Jefe",
            &[b"what do ya want for nothing?"],
            &sig
        ));
        assert!(!verify_hex(
            b"jefe",
            &[b"what do ya want for nothing?"],
            &sig
        ));
        assert!(!verify_hex(
            b"Jefe",
            &[b"what do ya want for nothing!"],
            &sig
        ));
        assert!(!verify_hex(b"Jefe", &[b"x"], "zz"));
        assert!(!verify_hex(b"Jefe", &[b"x"], "abc"));
    }
}
