//! Credentials as they travel: `hth_<id>_<secret>`, 24 hex digits of public id (how the
//! record is found) and 64 of secret (256 random bits, stored only as its SHA-256). The same
//! shape serves API tokens, session cookies and one-time sign-in links; the record's kind says
//! which it is, so one can never be used as another.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::Error;

const PREFIX: &str = "hth_";
const ID_HEX: usize = 24;
const SECRET_HEX: usize = 64;
/// The length of every credential: anything else is refused before it is looked at further.
pub const LEN: usize = PREFIX.len() + ID_HEX + 1 + SECRET_HEX;

/// A credential split into the id its record is found by and its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    pub id: String,
    secret: String,
}

// Never print the secret (logs, panics, test output).
impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({}, …)", self.id)
    }
}

impl Secret {
    /// A new credential from the system's randomness (or an error: never a guessable one).
    pub fn mint() -> Result<Secret, Error> {
        Ok(Secret { id: crate::random_hex(ID_HEX / 2)?, secret: crate::random_hex(SECRET_HEX / 2)? })
    }

    /// Reads a presented credential; anything not of the shape is none at all.
    pub fn parse(text: &str) -> Option<Secret> {
        if text.len() != LEN {
            return None;
        }
        let rest = text.strip_prefix(PREFIX)?;
        let (id, secret) = rest.split_once('_')?;
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        (hex(id, ID_HEX) && hex(secret, SECRET_HEX)).then(|| Secret { id: id.into(), secret: secret.into() })
    }

    /// What is stored: the secret's digest (the secret has 256 bits of entropy, so a fast hash
    /// is as good as a slow one and costs nothing per request).
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.secret.as_bytes()))
    }

    /// Whether this is the secret whose digest is `stored`, in constant time.
    pub fn matches(&self, stored: &str) -> bool {
        self.digest().as_bytes().ct_eq(stored.as_bytes()).into()
    }

    /// The credential as the client holds it.
    pub fn expose(&self) -> String {
        format!("{PREFIX}{}_{}", self.id, self.secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_round_trip_and_anything_else_is_none() {
        let s = Secret::mint().unwrap();
        let text = s.expose();
        assert_eq!(text.len(), LEN);
        let back = Secret::parse(&text).unwrap();
        assert_eq!(back, s);
        assert!(back.matches(&s.digest()));
        assert!(!Secret::mint().unwrap().matches(&s.digest()));
        assert!(!format!("{s:?}").contains(&text[LEN - 10..]), "Debug shows no secret");
        for bad in ["", "hth_", &text[1..], &text.to_uppercase(), &format!("{text}0"), &text.replace('_', "-"), &"x".repeat(1 << 20)] {
            assert!(Secret::parse(bad).is_none(), "{bad:.40}");
        }
    }
}
