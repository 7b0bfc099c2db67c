//! Identities from a Hypha server: its tokens checked (locally as HS256 with the shared
//! secret, else by asking the server's workspace manager `parse_token`, which also knows
//! Auth0's RS256 tokens and revocations), verdicts cached no longer than the token lives, and
//! its browser login flow (`hypha-login`: start, then check).
//!
//! Must not: accept anonymous users, or a token of another algorithm, issuer or audience;
//! keep a token anywhere but as a digest in the cache.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::Hypha as Config;
use crate::error::{Error, Unavailable};

/// Hypha's own tokens: issuer and audience (hypha/core/auth.py).
const ISSUER: &str = "https://amun.ai/";
const AUDIENCE: &str = "https://amun-ai.eu.auth0.com/api/v2/";
/// Longest token looked at (Hypha's are well under 2 KiB).
pub const MAX_TOKEN: usize = 16 << 10;
/// Verdicts remembered at once.
const MAX_CACHED: usize = 10_000;
/// How long a call to the Hypha server may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest a browser login may be waited for in one check, seconds.
pub const MAX_CHECK_SECS: u64 = 30;

/// Who a Hypha token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Hypha's user id (the token's `sub`, or the user a generated token was made for).
    pub id: String,
    pub email: Option<String>,
    pub roles: Vec<String>,
    /// Unix seconds; none: the server did not say.
    pub expires_at: Option<u64>,
}

/// A login the browser is to complete at Hypha.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct LoginStart {
    pub login_url: String,
    pub key: String,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    /// A token a client generated carries its own `sub` and the user's id here.
    #[serde(rename = "https://amun.ai/parent", default)]
    parent: Option<String>,
    exp: u64,
    #[serde(rename = "https://amun.ai/roles", default)]
    roles: Vec<String>,
    #[serde(rename = "https://amun.ai/email", default)]
    email: Option<String>,
}

/// What `parse_token` answers (a `UserInfo`).
#[derive(Deserialize)]
struct UserInfo {
    id: String,
    /// Set for tokens a client generated: the user they were generated for.
    #[serde(default)]
    parent: Option<String>,
    #[serde(default)]
    is_anonymous: bool,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    expires_at: Option<f64>,
}

pub struct Verifier {
    config: Config,
    agent: ureq::Agent,
    cache: Mutex<HashMap<[u8; 32], (Identity, Instant)>>,
}

fn refused(why: &str) -> Error {
    Error::Unauthenticated(format!("the Hypha token is not valid: {why}"))
}

fn unreachable(e: impl std::fmt::Display) -> Error {
    Error::Unavailable { what: Unavailable::Hypha, message: format!("the Hypha server cannot be reached now ({e}); local accounts still sign in") }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Verifier {
    pub fn new(config: &Config) -> Verifier {
        let agent = ureq::AgentBuilder::new().timeout_connect(Duration::from_secs(5)).timeout(CALL_TIMEOUT + Duration::from_secs(MAX_CHECK_SECS)).build();
        Verifier { config: config.clone(), agent, cache: Mutex::default() }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.server_url.trim_end_matches('/'))
    }

    /// Whether `text` has the shape of a JWT (three base64url parts).
    pub fn looks_like_jwt(text: &str) -> bool {
        text.len() <= MAX_TOKEN && text.split('.').count() == 3 && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    }

    /// Who `token` belongs to. Blocking (it may ask the Hypha server).
    pub fn verify(&self, token: &str) -> Result<Identity, Error> {
        if !Self::looks_like_jwt(token) {
            return Err(refused("not a JWT"));
        }
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = Instant::now();
        if let Some((id, until)) = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&key) {
            if *until > now {
                return Ok(id.clone());
            }
        }
        let id = if self.config.jwt_secret.is_empty() { self.ask(token)? } else { self.decode(token)? };
        if id.roles.iter().any(|r| r == "anonymous") {
            return Err(Error::Forbidden("anonymous Hypha users cannot sign in; log in to Hypha first".into()));
        }
        // Trusted until the token ends, and no longer than the configured time.
        let left = id.expires_at.map_or(Duration::MAX, |e| Duration::from_secs(e.saturating_sub(now_secs())));
        let keep = left.min(Duration::from_secs(self.config.cache_secs));
        if !keep.is_zero() {
            let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if cache.len() >= MAX_CACHED {
                cache.retain(|_, (_, until)| *until > now);
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
            }
            cache.insert(key, (id.clone(), now + keep));
        }
        Ok(id)
    }

    /// Checks an HS256 token with the shared secret: signature, issuer, audience, expiry;
    /// any other algorithm (`none`, RS256) is refused.
    fn decode(&self, token: &str) -> Result<Identity, Error> {
        let mut v = Validation::new(Algorithm::HS256);
        v.set_issuer(&[ISSUER]);
        v.set_audience(&[AUDIENCE]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = 0;
        let data = jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(self.config.jwt_secret.as_bytes()), &v).map_err(|e| refused(&e.to_string()))?;
        let c = data.claims;
        Ok(Identity { id: c.parent.unwrap_or(c.sub), email: c.email, roles: c.roles, expires_at: Some(c.exp) })
    }

    /// Asks the Hypha server who `token` belongs to (its workspace manager's `parse_token`).
    fn ask(&self, token: &str) -> Result<Identity, Error> {
        // Asked with the token itself: `parse_token` answers only for a token of the caller's
        // own workspace (and the call's own sign-in checks it on the way).
        let resp = self.agent.post(&self.url("/public/services/ws/parse_token")).set("Authorization", &format!("Bearer {token}")).send_json(serde_json::json!({ "token": token }));
        let info: UserInfo = match resp {
            Ok(r) => r.into_json().map_err(|e| unreachable(format!("its answer: {e}")))?,
            // It answered: the token is not one it accepts (Hypha wraps its refusals, 401 and
            // 403, in a 500 that says so).
            Err(ureq::Error::Status(s, _)) if (400..500).contains(&s) => return Err(refused("the Hypha server does not accept it")),
            Err(ureq::Error::Status(500, r)) => {
                let body = r.into_string().unwrap_or_default();
                if body.contains("HTTPException: 40") {
                    return Err(refused("the Hypha server does not accept it"));
                }
                return Err(unreachable("it failed: status code 500"));
            }
            Err(e) => return Err(unreachable(e)),
        };
        if info.is_anonymous {
            return Err(Error::Forbidden("anonymous Hypha users cannot sign in; log in to Hypha first".into()));
        }
        let expires_at = info.expires_at.map(|e| e as u64);
        if expires_at.is_some_and(|e| e <= now_secs()) {
            return Err(refused("expired"));
        }
        Ok(Identity { id: info.parent.unwrap_or(info.id), email: info.email, roles: info.roles, expires_at })
    }

    /// Starts a browser login at the Hypha server: the page to open and the key to check.
    pub fn start_login(&self) -> Result<LoginStart, Error> {
        match self.agent.post(&self.url("/public/services/hypha-login/start")).send_json(serde_json::json!({})) {
            Ok(r) => r.into_json().map_err(|e| unreachable(format!("its answer: {e}"))),
            Err(e) => Err(unreachable(e)),
        }
    }

    /// Waits up to `timeout_secs` for the login of `key` to complete; its token, or none yet.
    pub fn check_login(&self, key: &str, timeout_secs: u64) -> Result<Option<String>, Error> {
        if key.is_empty() || key.len() > 128 || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)) {
            return Err(Error::invalid("key", "not a login key"));
        }
        let body = serde_json::json!({ "key": key, "timeout": timeout_secs.min(MAX_CHECK_SECS) });
        match self.agent.post(&self.url("/public/services/hypha-login/check")).send_json(body) {
            Ok(r) => {
                let v: serde_json::Value = r.into_json().map_err(|e| unreachable(format!("its answer: {e}")))?;
                Ok(v.as_str().map(str::to_string))
            }
            // An unknown or expired key; a wait that ran out.
            Err(ureq::Error::Status(s, r)) if (400..500).contains(&s) => {
                let detail = r.into_string().unwrap_or_default();
                if detail.contains("timeout") {
                    Ok(None)
                } else {
                    Err(Error::Unauthenticated("the Hypha login is unknown or expired; start again".into()))
                }
            }
            Err(e) => Err(unreachable(e)),
        }
    }
}

/// The claims of identities, for the log line of a sign-in (never the token).
pub fn describe(id: &Identity) -> String {
    format!("{} <{}>", id.id, id.email.as_deref().unwrap_or("no email"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

    const ROLES: &str = "https://amun.ai/roles";
    const EMAIL: &str = "https://amun.ai/email";

    fn token(secret: &str, alg: Algorithm, claims: serde_json::Value) -> String {
        jsonwebtoken::encode(&Header::new(alg), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    }

    fn claims(exp: u64, aud: &str, roles: &[&str]) -> serde_json::Value {
        serde_json::json!({"iss": ISSUER, "aud": aud, "sub": "ann-1", "exp": exp, ROLES: roles, EMAIL: "ann@lab.org"})
    }

    #[test]
    fn hs256_tokens_are_checked_locally_with_the_shared_secret() {
        let v = Verifier::new(&Config { server_url: "http://127.0.0.1:9".into(), jwt_secret: "s3cret".into(), ..Default::default() });
        let later = now_secs() + 600;
        let id = v.verify(&token("s3cret", Algorithm::HS256, claims(later, AUDIENCE, &["user"]))).unwrap();
        assert_eq!((id.id.as_str(), id.email.as_deref(), id.expires_at), ("ann-1", Some("ann@lab.org"), Some(later)));
        for (why, t) in [
            ("expired", token("s3cret", Algorithm::HS256, claims(now_secs() - 5, AUDIENCE, &["user"]))),
            ("another secret", token("other", Algorithm::HS256, claims(later, AUDIENCE, &["user"]))),
            ("another audience", token("s3cret", Algorithm::HS256, claims(later, "https://else/", &["user"]))),
            ("HS512", token("s3cret", Algorithm::HS512, claims(later, AUDIENCE, &["user"]))),
        ] {
            assert!(matches!(v.verify(&t), Err(Error::Unauthenticated(_))), "{why}");
        }
        assert!(matches!(v.verify(&token("s3cret", Algorithm::HS256, claims(later, AUDIENCE, &["anonymous"]))), Err(Error::Forbidden(_))));
        // HS/RS confusion: a token that says RS256 (as Auth0's do) is never checked as HS256
        // with the secret, whatever its signature.
        let good = token("s3cret", Algorithm::HS256, claims(later, AUDIENCE, &["user"]));
        let rs_header = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9"; // {"alg":"RS256","typ":"JWT"}
        let confused = format!("{rs_header}.{}", good.split_once('.').unwrap().1);
        assert!(matches!(v.verify(&confused), Err(Error::Unauthenticated(_))));
        // alg none, and garbage of every shape.
        let none = format!(
            "eyJhbGciOiJub25lIn0.{}.",
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims(later, AUDIENCE, &[]), &EncodingKey::from_secret(b"x")).unwrap().split('.').nth(1).unwrap()
        );
        for bad in [none.as_str(), "a.b.c", "", "...", &"a".repeat(MAX_TOKEN + 1)] {
            assert!(matches!(v.verify(bad), Err(Error::Unauthenticated(_))), "{bad:.30}");
        }
    }

    #[test]
    fn without_the_server_tokens_cannot_be_checked() {
        let v = Verifier::new(&Config { server_url: "http://127.0.0.1:9".into(), ..Default::default() });
        let t = token("s3cret", Algorithm::HS256, claims(now_secs() + 600, AUDIENCE, &["user"]));
        assert!(matches!(v.verify(&t), Err(Error::Unavailable { what: Unavailable::Hypha, .. })));
    }
}
