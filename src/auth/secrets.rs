//! Passwords and generated secrets. Passwords are stored as argon2id hashes;
//! robot secrets are 256 random bits, so a SHA-256 of them is as strong as a
//! slow hash and lets every request be checked in microseconds. All
//! comparisons are constant-time.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The shortest password accepted for a user.
pub const MIN_PASSWORD_LEN: usize = 8;

pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters hashes any input")
        .to_string()
}

/// Checks a password against a stored hash. A malformed hash never matches.
pub fn verify_password(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Spends the time of one verification, so that an unknown user name takes as
/// long to refuse as a wrong password.
pub fn verify_nothing(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let hash = DUMMY.get_or_init(|| hash_password("not a password anyone has"));
    let _ = verify_password(hash, password);
}

/// A new random secret (256 bits, URL-safe base64).
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A password for the first administrator when none was configured.
pub fn generate_password() -> String {
    let mut bytes = [0u8; 18];
    OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub fn verify_secret(hash: &str, secret: &str) -> bool {
    hash_secret(secret).as_bytes().ct_eq(hash.as_bytes()).into()
}

/// Whether `secret`'s SHA-256 is `hash` (constant-time).
pub fn sha256_is(hash: &[u8; 32], secret: &str) -> bool {
    Sha256::digest(secret.as_bytes())
        .as_slice()
        .ct_eq(hash)
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_secrets() {
        let h = hash_password("correct horse");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, "correct horse"));
        assert!(!verify_password(&h, "correct hors"));
        assert!(!verify_password("garbage", "x"));
        let s = generate_secret();
        assert_eq!(s.len(), 43);
        let hs = hash_secret(&s);
        assert!(verify_secret(&hs, &s));
        assert!(!verify_secret(&hs, &generate_secret()));
        assert_ne!(generate_secret(), s);
        let raw: [u8; 32] = Sha256::digest(b"harbor-token").into();
        assert!(sha256_is(&raw, "harbor-token"));
        assert!(!sha256_is(&raw, "harbor-token "));
    }
}
