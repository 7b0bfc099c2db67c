//! `[hypha]`: signing in with a Hypha server's identities (docs/access.md).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Hypha {
    /// The Hypha server whose users may sign in (`https://hypha.aicell.io`). Empty: no Hypha
    /// sign-in.
    pub server_url: String,
    /// The Hypha server's `HYPHA_JWT_SECRET`, when shared: its HS256 tokens are then checked
    /// here (signature, issuer, audience, expiry) without asking it. Empty: every token is
    /// checked by asking the server (which also honours revocations).
    pub jwt_secret: String,
    /// Hypha roles (`https://amun.ai/roles`) that make a user an administrator here.
    pub admin_roles: Vec<String>,
    /// How long a token the server vouched for is trusted without asking again, seconds
    /// (never past the token's own expiry).
    pub cache_secs: u64,
}

impl Default for Hypha {
    fn default() -> Self {
        Self { server_url: String::new(), jwt_secret: String::new(), admin_roles: Vec::new(), cache_secs: 60 }
    }
}

impl Hypha {
    pub fn enabled(&self) -> bool {
        !self.server_url.is_empty()
    }

    pub(super) fn check(&self) -> Result<(), String> {
        let url = self.server_url.trim_end_matches('/');
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("hypha.server_url must be an http(s) URL, got `{url}`"));
        }
        if !self.jwt_secret.is_empty() && url.is_empty() {
            return Err("hypha.jwt_secret needs hypha.server_url".into());
        }
        if self.cache_secs > 3600 {
            return Err("hypha.cache_secs must be at most 3600".into());
        }
        Ok(())
    }
}
