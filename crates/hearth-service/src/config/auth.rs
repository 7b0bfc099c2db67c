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
    /// Who may sign in with an identity from elsewhere (Hypha): exact addresses
    /// (`ann@lab.org`) and whole domains (`*@lab.org`), case-insensitive. Empty: anyone the
    /// identity provider vouches for. Local accounts are made by administrators and are not
    /// held to it.
    pub allow_emails: Vec<String>,
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
            allow_emails: Vec::new(),
        }
    }
}

/// `ann@lab.org` or `*@lab.org`.
pub fn email_pattern_ok(p: &str) -> bool {
    match p.split_once('@') {
        Some((local, domain)) => !local.is_empty() && (local == "*" || !local.contains('*')) && !domain.is_empty() && !domain.contains(['*', '@', ' ']),
        None => false,
    }
}

/// Whether `email` is one of `patterns` (addresses, `*@domain`), case-insensitive.
pub fn email_matches(patterns: &[String], email: Option<&str>) -> bool {
    let Some(email) = email.map(str::to_ascii_lowercase) else { return false };
    let Some((_, domain)) = email.rsplit_once('@') else { return false };
    patterns.iter().map(|p| p.to_ascii_lowercase()).any(|p| p == email || p.strip_prefix("*@") == Some(domain))
}

impl Auth {
    /// Where the administrator token is kept: `admin_token_file`, or `<data_dir>/admin.token`.
    pub fn admin_token_path(&self, data_dir: &std::path::Path) -> std::path::PathBuf {
        match self.admin_token_file.as_str() {
            "" => data_dir.join("admin.token"),
            f => f.into(),
        }
    }

    /// Whether `email` may sign in by the allowlist (an empty list allows everyone; no
    /// address, with a list, is not allowed).
    pub fn email_allowed(&self, email: Option<&str>) -> bool {
        self.allow_emails.is_empty() || email_matches(&self.allow_emails, email)
    }

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
        if let Some(bad) = self.allow_emails.iter().find(|e| !email_pattern_ok(e)) {
            return Err(format!("auth.allow_emails: `{bad}` is neither an address nor *@domain"));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_email_allowlist_takes_addresses_and_domains() {
        let a = Auth { allow_emails: vec!["Ann@X.org".into(), "*@lab.org".into()], ..Default::default() };
        assert!(a.check().is_ok());
        for ok in ["ann@x.org", "ANN@x.org", "bob@lab.org", "b@LAB.org"] {
            assert!(a.email_allowed(Some(ok)), "{ok}");
        }
        for no in ["bob@x.org", "ann@x.org.evil", "bob@evil-lab.org", "bob@sub.lab.org", "lab.org", ""] {
            assert!(!a.email_allowed(Some(no)), "{no}");
        }
        assert!(!a.email_allowed(None));
        assert!(Auth::default().email_allowed(None));
        for bad in ["nobody", "a*@x.org", "*@", "@x.org", "*@*.org"] {
            assert!(Auth { allow_emails: vec![bad.into()], ..Default::default() }.check().is_err(), "{bad}");
        }
    }
}
