//! Passwords, kept as Argon2id hashes in PHC form (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`):
//! OWASP's parameters (19 MiB, two passes, one lane) and a random 16-byte salt of each hash's
//! own. The hash carries its parameters, so stronger ones later still verify the old hashes.
//!
//! Each call costs tens of milliseconds of CPU and 19 MiB on purpose: call them from
//! `tokio::task::spawn_blocking`, never on an async worker.

use argon2::{
    Argon2,
    password_hash::{PasswordHasher, PasswordVerifier},
};
use uuid::Uuid;

/// The longest password taken, in bytes: enough for any passphrase, and a bound on the work a
/// request can ask for.
pub const MAX_BYTES: usize = 1024;

/// The Argon2id hash of `password`, with a fresh random salt.
pub fn hash(password: &str) -> Result<String, String> {
    // 16 random bytes from the OS, through uuid's v4 (its 122 random bits plus 6 fixed ones
    // are within what a salt needs: unique, not secret).
    let salt = *Uuid::new_v4().as_bytes();
    Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` is the one `phc` was made from (false for a hash that does not parse).
pub fn verify(password: &str, phc: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), phc)
        .is_ok()
}

/// The work of one verification, for an account that does not exist, so that how long the
/// answer takes does not tell whether it does.
pub fn verify_nothing(password: &str) {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let decoy = DECOY.get_or_init(|| hash("no account has this password").unwrap_or_default());
    let _ = verify(password, decoy);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_hash_only() {
        let phc = hash("correct horse battery staple").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify("correct horse battery staple", &phc));
        assert!(!verify("correct horse battery stapler", &phc));
        assert!(!verify("correct horse battery staple", "not a hash"));
        // Each hash has a salt of its own.
        assert_ne!(hash("same").unwrap(), hash("same").unwrap());
        verify_nothing("anything");
    }
}
