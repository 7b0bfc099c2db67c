//! Passwords: argon2id hashes in PHC strings (the algorithm, its parameters and the salt
//! travel with the hash, so they can be raised later without a migration).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use crate::error::Error;

/// Shortest password accepted.
pub const MIN_CHARS: usize = 8;
/// Longest: hashing cost grows with length, and a client controls it.
pub const MAX_BYTES: usize = 1024;

/// Refuses passwords outside the bounds, naming `field`.
pub fn check(field: &str, password: &str) -> Result<(), Error> {
    if password.chars().count() < MIN_CHARS {
        return Err(Error::invalid(field, format!("at least {MIN_CHARS} characters")));
    }
    if password.len() > MAX_BYTES {
        return Err(Error::invalid(field, format!("at most {MAX_BYTES} bytes")));
    }
    Ok(())
}

/// The PHC string of `password` with a fresh salt.
pub fn hash(password: &str) -> Result<String, Error> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| Error::internal(format!("no randomness for a salt: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| Error::internal(format!("encoding a salt: {e}")))?;
    Ok(Argon2::default().hash_password(password.as_bytes(), &salt).map_err(|e| Error::internal(format!("hashing a password: {e}")))?.to_string())
}

/// Whether `password` is the one `stored` was made from. `None` (an account without a
/// password, or none at all) still costs one hash, so timing does not tell accounts apart.
pub fn verify(password: &str, stored: Option<&str>) -> bool {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash("not anyone's password").unwrap_or_default());
    let (phc, real) = match stored {
        Some(s) => (s, true),
        None => (dummy.as_str(), false),
    };
    let Ok(parsed) = PasswordHash::new(phc) else { return false };
    let ok = password.len() <= MAX_BYTES && Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok();
    ok && real
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_their_password_only() {
        let h = hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify("correct horse", Some(&h)));
        assert!(!verify("correct horsE", Some(&h)));
        assert!(!verify("not anyone's password", None), "no account never verifies");
        assert!(!verify("x", Some("garbage")));
        assert_ne!(hash("correct horse").unwrap(), h, "salted");
        assert!(check("password", "short").is_err() && check("password", &"x".repeat(2000)).is_err() && check("password", "long enough").is_ok());
    }
}
