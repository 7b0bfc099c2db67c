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
    /// A Hypha token to register hearth as a Hypha service with (docs/hypha.md): set, `hearth
    /// serve` runs the bridge that serves it. Empty: no Hypha service.
    pub service_token: String,
    /// The service's id: callers use `<workspace>/<service_id>`.
    pub service_id: String,
    /// `public` (any signed-in Hypha user may call; hearth still decides what they may do)
    /// or `protected` (only users of its workspace).
    pub service_visibility: String,
    /// The workspace to register in (empty: the token's own).
    pub service_workspace: String,
    /// A Python with `hypha-rpc` to run the bridge with (empty: hearth makes a venv with a
    /// pinned `hypha-rpc` under the artifact cache at first start).
    pub bridge_python: String,
}

impl Default for Hypha {
    fn default() -> Self {
        Self {
            server_url: String::new(),
            jwt_secret: String::new(),
            admin_roles: Vec::new(),
            cache_secs: 60,
            service_token: String::new(),
            service_id: "hearth-terminal-service".into(),
            service_visibility: "public".into(),
            service_workspace: String::new(),
            bridge_python: String::new(),
        }
    }
}

impl Hypha {
    pub fn enabled(&self) -> bool {
        !self.server_url.is_empty()
    }

    /// Whether hearth is to be served as a Hypha service (the bridge runs).
    pub fn serves(&self) -> bool {
        self.enabled() && !self.service_token.is_empty()
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
        if !self.service_token.is_empty() && url.is_empty() {
            return Err("hypha.service_token needs hypha.server_url".into());
        }
        let id_ok = |s: &str| !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
        if !id_ok(&self.service_id) {
            return Err(format!("hypha.service_id must be 1-64 of a-z A-Z 0-9 - _, got `{}`", self.service_id));
        }
        if !matches!(self.service_visibility.as_str(), "public" | "protected") {
            return Err(format!("hypha.service_visibility must be public or protected, got `{}`", self.service_visibility));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Hypha;

    #[test]
    fn the_service_settings_are_checked() {
        let on = Hypha { server_url: "http://127.0.0.1:9527".into(), service_token: "t".into(), ..Hypha::default() };
        assert!(on.check().is_ok() && on.serves());
        assert!(!Hypha { service_token: String::new(), ..on.clone() }.serves(), "no token: no service");
        for (bad, why) in [
            (Hypha { server_url: String::new(), ..on.clone() }, "needs hypha.server_url"),
            (Hypha { service_id: "has space".into(), ..on.clone() }, "service_id"),
            (Hypha { service_id: String::new(), ..on.clone() }, "service_id"),
            (Hypha { service_visibility: "everyone".into(), ..on.clone() }, "public or protected"),
        ] {
            let err = bad.check().unwrap_err();
            assert!(err.contains(why), "{err}");
        }
    }
}
