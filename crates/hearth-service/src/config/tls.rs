//! `[tls]`: serving HTTPS directly, from PEM files (else plain HTTP, or a reverse proxy in
//! front: docs/access.md).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tls {
    /// The certificate chain, PEM (the server's certificate first). Empty: plain HTTP.
    pub cert_file: String,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
}

impl Tls {
    pub fn enabled(&self) -> bool {
        !self.cert_file.is_empty()
    }

    pub(super) fn check(&self) -> Result<(), String> {
        if self.cert_file.is_empty() != self.key_file.is_empty() {
            return Err("tls.cert_file and tls.key_file go together".into());
        }
        Ok(())
    }
}
