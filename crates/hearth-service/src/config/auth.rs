//! `[auth]`: who may reach the server and how sign-ins behave.

use serde::{Deserialize, Serialize};

/// Longest session a configuration may ask for, hours (a year).
const MAX_SESSION_HOURS: u32 = 24 * 366;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Auth {
    /// The URL users reach the server at (`https://hearth.example.org`), when it is not the
    /// listen address: behind a reverse proxy, say. Its host is allowed in `Host`, its origin
    /// in `Origin`, and with `https` session cookies are `Secure`. Empty: none.
    pub public_url: String,
    /// Host names requests may name in `Host` besides `localhost`, IP addresses and
    /// `public_url`'s (any other is refused: DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// The administrator token the server keeps for this host's own CLI (mode 0600; made at
    /// first start). Empty: `<data dir>/admin.token`.
    pub admin_token_file: String,
    /// How long a browser session lasts, hours.
    pub session_hours: u32,
    /// Failed sign-ins one account may have in 15 minutes before it is refused for the rest.
    pub max_failed_sign_ins: u32,
    /// Failed sign-ins one address may have in 15 minutes.
    pub max_failed_sign_ins_per_address: u32,
    /// API tokens one user may hold.
    pub max_tokens_per_user: u32,
}

impl Default for Auth {
    fn default() -> Self {
        Self {
            public_url: String::new(),
            allowed_hosts: Vec::new(),
            admin_token_file: String::new(),
            session_hours: 24 * 7,
            max_failed_sign_ins: 10,
            max_failed_sign_ins_per_address: 50,
            max_tokens_per_user: 100,
        }
    }
}

impl Auth {
    pub(super) fn check(&self) -> Result<(), String> {
        if self.session_hours == 0 || self.session_hours > MAX_SESSION_HOURS {
            return Err(format!("auth.session_hours must be 1-{MAX_SESSION_HOURS}"));
        }
        if self.max_failed_sign_ins == 0 || self.max_failed_sign_ins_per_address == 0 || self.max_tokens_per_user == 0 {
            return Err("auth: max_failed_sign_ins, max_failed_sign_ins_per_address and max_tokens_per_user must be positive".into());
        }
        if !self.public_url.is_empty() {
            self.public_origin().ok_or_else(|| format!("auth.public_url must be http(s)://host[:port][/path], got `{}`", self.public_url))?;
        }
        if let Some(h) = self.allowed_hosts.iter().find(|h| h.is_empty() || h.contains(['/', ':', ' ', '@'])) {
            return Err(format!("auth.allowed_hosts: `{h}` is not a host name"));
        }
        Ok(())
    }

    /// `public_url`'s scheme, host and port (`https://hearth.example.org`), lowercase; none
    /// when it is unset or not a URL.
    pub fn public_origin(&self) -> Option<(String, String)> {
        let url = self.public_url.trim_end_matches('/');
        let (scheme, rest) = url.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return None;
        }
        let authority = rest.split('/').next()?.to_ascii_lowercase();
        if authority.is_empty() || authority.contains('@') {
            return None;
        }
        Some((format!("{scheme}://{authority}"), authority))
    }

    /// Whether sessions travel over HTTPS only.
    pub fn secure_cookies(&self) -> bool {
        self.public_origin().is_some_and(|(o, _)| o.starts_with("https://"))
    }
}
