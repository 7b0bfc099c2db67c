//! Accounts and credentials: who a presented credential belongs to ([`Service::authenticate`]),
//! password sign-in with its rate limits, browser sessions, API tokens, one-time sign-in links,
//! the administrator token this host's CLI uses, and the account operations.
//!
//! Owns: turning a secret into a [`Principal`]. What a principal may then do is decided by the
//! operations ([`Principal::sees`], [`Principal::may`]).
//!
//! Must not: keep or log a secret. Credentials are stored as digests ([`secret`]), passwords
//! as argon2id hashes ([`password`]); no error names a secret.

pub mod allowlist;
pub mod hypha;
pub mod limiter;
pub mod password;
pub mod records;
pub mod secret;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use hearth_proto::api::{CreateToken, CreateUser, NewToken, Scope, Session, SignIn, Token, UpdateUser, User};
use hearth_proto::unix_ms_now;

use crate::error::Error;
use crate::principal::Principal;
use crate::Service;
use records::{CredentialRow, Kind, UserRow};
use secret::Secret;

/// The account made at first start, and the one the administrator token belongs to.
pub const FIRST_ADMIN: &str = "admin";
/// How long a one-time sign-in link works.
const LINK_MS: u64 = 60 * 60 * 1000;
/// Browser sessions one user may hold; past it, the oldest end.
const MAX_SESSIONS: usize = 100;
/// Longest life an API token may be given, days (ten years; 0 asks for no expiry).
pub const MAX_TOKEN_DAYS: u32 = 3650;
const DEFAULT_TOKEN_DAYS: u32 = 30;
/// A credential's last use is written at most this often (each write is an fsync).
const TOUCH_EVERY_MS: u64 = 60_000;
const DAY_MS: u64 = 24 * 60 * 60 * 1000;
/// Longest token name, characters.
pub const MAX_TOKEN_NAME: usize = 64;
/// Longest email address, bytes.
const MAX_EMAIL: usize = 254;

/// A credential as presented, before it is checked.
#[derive(Clone, Copy)]
pub enum Credential<'a> {
    /// `Authorization: Bearer`: an API token.
    Bearer(&'a str),
    /// The session cookie.
    Session(&'a str),
}

/// A credential that checked out: who it is, and what the edge needs of it.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub principal: Principal,
    /// Its record's id (signing out ends it).
    pub credential: String,
    /// A session's CSRF token: requests that change something must carry it.
    pub csrf: Option<String>,
    pub expires_ms: Option<u64>,
}

impl Authenticated {
    /// Whether `presented` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.csrf.as_ref().is_some_and(|c| c.as_bytes().ct_eq(presented.as_bytes()).into())
    }

    /// What `GET /api/v1/auth/session` shows.
    pub fn session(&self) -> Session {
        Session {
            user: self.principal.user.clone(),
            admin: self.principal.is_admin(),
            scope: self.principal.scope,
            csrf_token: self.csrf.clone(),
            expires_unix_ms: self.expires_ms,
        }
    }
}

/// A new browser session: what the client is told, and the cookie's value and life.
pub struct IssuedSession {
    pub session: Session,
    /// The cookie's value.
    pub secret: String,
    pub max_age_secs: u64,
}

// Never print the cookie's value.
impl std::fmt::Debug for IssuedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedSession").field("session", &self.session).field("max_age_secs", &self.max_age_secs).finish_non_exhaustive()
    }
}

/// What the server does at start to be reachable by its administrator.
#[derive(Debug)]
pub struct Bootstrap {
    /// The administrator token's file (for this host's CLI).
    pub admin_token_file: PathBuf,
    /// A one-time sign-in link's code, while no administrator has a password.
    pub link: Option<String>,
}

/// Sign-in state that lives in memory only, and the Hypha server identities come from.
pub struct Access {
    limiter: limiter::Limiter,
    hypha: Option<hypha::Verifier>,
    /// The key the Hypha bridge acts for its callers with (see [`Service::bridge_key`]):
    /// made when first asked for, never stored.
    bridge_key: std::sync::OnceLock<String>,
}

impl Access {
    pub fn new(config: &crate::config::Auth, hypha: &crate::config::Hypha) -> Access {
        Access {
            limiter: limiter::Limiter::new(config.max_failed_sign_ins, config.max_failed_sign_ins_per_address),
            hypha: hypha.enabled().then(|| hypha::Verifier::new(hypha)),
            bridge_key: std::sync::OnceLock::new(),
        }
    }
}

/// The caller of a Hypha service call, as the Hypha server put it in the call's context
/// (`context.user`) and the bridge passes it on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct HyphaCaller {
    pub id: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub is_anonymous: bool,
}

/// A new key for the Hypha bridge: 64 random hex digits.
pub fn new_bridge_key() -> Result<String, Error> {
    crate::random_hex(32)
}

/// The credential id the bridge's calls are recorded under.
pub const BRIDGE_CREDENTIAL: &str = "hypha-bridge";

/// Accounts of Hypha users are `hypha:<their Hypha id>` (local ids never hold `:`).
pub const HYPHA_PREFIX: &str = "hypha:";

fn unauthenticated() -> Error {
    Error::Unauthenticated("the credential is not valid (wrong, expired or revoked); sign in again".into())
}

/// Checks a user id: what local accounts' ids may be (and so never contains `:`, which other
/// identity providers' ids will carry).
pub fn check_user_id(field: &str, id: &str) -> Result<(), Error> {
    let ok_first = id.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let ok_rest = id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if !(1..=32).contains(&id.len()) || !ok_first || !ok_rest {
        return Err(Error::invalid(field, "1-32 of a-z 0-9 . _ -, starting with a letter or digit"));
    }
    Ok(())
}

fn check_email(email: &Option<String>) -> Result<(), Error> {
    match email {
        Some(e) if e.len() > MAX_EMAIL || !e.contains('@') || e.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            Err(Error::invalid("email", format!("an email address of at most {MAX_EMAIL} bytes")))
        }
        _ => Ok(()),
    }
}

impl Service {
    /// Who `credential` belongs to, with what it may do; 401 `unauthenticated` for anything
    /// else (unknown, wrong, expired, revoked, of a disabled account, or of another kind).
    pub async fn authenticate(self: &Arc<Self>, credential: Credential<'_>) -> Result<Authenticated, Error> {
        let (kind, text) = match credential {
            // Not one of ours: a Hypha token, when Hypha sign-in is on.
            Credential::Bearer(t) if !t.starts_with("hth_") && self.access.hypha.is_some() && hypha::Verifier::looks_like_jwt(t) => {
                let token = t.to_string();
                return self.run(move |s| s.hypha_caller(&token)).await;
            }
            Credential::Bearer(t) => (Kind::Token, t),
            Credential::Session(t) => (Kind::Session, t),
        };
        // Refused before any work: not of the shape of a hearth credential.
        let secret = Secret::parse(text).ok_or_else(unauthenticated)?;
        self.run(move |s| s.check_credential(&secret, kind)).await
    }

    fn check_credential(&self, secret: &Secret, kind: Kind) -> Result<Authenticated, Error> {
        let now = unix_ms_now();
        let row = self.store.credential(&secret.id)?.filter(|r| r.kind == kind && secret.matches(&r.digest) && !r.expired(now)).ok_or_else(unauthenticated)?;
        let user = self.store.user(&row.user)?.filter(|u| !u.disabled).ok_or_else(unauthenticated)?;
        if row.last_used_ms.is_none_or(|t| now.saturating_sub(t) >= TOUCH_EVERY_MS) {
            self.store.touch_credential(&row.id, now)?;
        }
        Ok(Authenticated { principal: principal_of(&user).limited_to(row.scope), credential: row.id, csrf: row.csrf, expires_ms: row.expires_ms })
    }

    /// The account a Hypha token stands for (made at its first use), and who the token says.
    fn hypha_account(&self, token: &str) -> Result<(UserRow, hypha::Identity), Error> {
        let verifier = self.access.hypha.as_ref().ok_or_else(unauthenticated)?;
        let id = verifier.verify(token)?;
        Ok((self.admit_identity(&id)?, id))
    }

    /// The caller a Hypha token stands for.
    fn hypha_caller(&self, token: &str) -> Result<Authenticated, Error> {
        let (user, id) = self.hypha_account(token)?;
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()));
        Ok(Authenticated { principal: principal_of(&user), credential: format!("{HYPHA_PREFIX}{}", &digest[..24]), csrf: None, expires_ms: id.expires_at.map(|s| s * 1000) })
    }

    /// The key the Hypha bridge presents to act for the Hypha users who call it (only the
    /// process `hearth serve` starts is given it). 64 random hex digits, made at first ask,
    /// the same for the life of this service.
    pub fn bridge_key(&self) -> Result<String, Error> {
        if let Some(k) = self.access.bridge_key.get() {
            return Ok(k.clone());
        }
        let made = new_bridge_key()?;
        Ok(self.access.bridge_key.get_or_init(|| made).clone())
    }

    /// Takes `key` as the bridge's (serving from the box, the host runs the bridge and hands
    /// the server inside the key); false when this service already has another.
    pub fn use_bridge_key(&self, key: String) -> bool {
        self.access.bridge_key.get_or_init(|| key.clone()) == &key
    }

    /// The caller of a call the Hypha bridge makes for `caller`, when `key` is the bridge's:
    /// held to exactly what a Hypha sign-in is (anonymous users refused, the allowlist, the
    /// account made at first use, disabled accounts refused).
    pub async fn authenticate_bridged(self: &Arc<Self>, key: &str, caller: HyphaCaller) -> Result<Authenticated, Error> {
        use subtle::ConstantTimeEq;
        let ours = self.access.bridge_key.get().filter(|_| self.access.hypha.is_some()).ok_or_else(unauthenticated)?;
        if !bool::from(ours.as_bytes().ct_eq(key.as_bytes())) {
            return Err(unauthenticated());
        }
        if caller.is_anonymous || caller.roles.iter().any(|r| r == "anonymous") {
            return Err(Error::Forbidden("anonymous Hypha users cannot use this service; log in to Hypha first".into()));
        }
        let id = hypha::Identity { id: caller.id, email: caller.email, roles: caller.roles, expires_at: None };
        self.run(move |s| {
            let user = s.admit_identity(&id)?;
            Ok(Authenticated { principal: principal_of(&user), credential: BRIDGE_CREDENTIAL.into(), csrf: None, expires_ms: None })
        })
        .await
    }

    /// The account of a Hypha identity, if the allowlist admits it: made at its first
    /// sign-in, its email kept current, made an administrator by a role in
    /// `hypha.admin_roles` (never unmade by one: administrators here decide that).
    fn admit_identity(&self, id: &hypha::Identity) -> Result<UserRow, Error> {
        if !self.email_allowed(id.email.as_deref())? {
            let who = id.email.as_deref().unwrap_or("a Hypha account without an email address");
            return Err(Error::NotAllowed(format!("{who} is not on this server's allowlist; ask its administrator to add it")));
        }
        if id.id.is_empty() || id.id.len() > 128 || id.id.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(unauthenticated());
        }
        let uid = format!("{HYPHA_PREFIX}{}", id.id);
        let role_admin = id.roles.iter().any(|r| self.config.hypha.admin_roles.contains(r));
        match self.store.user(&uid)? {
            Some(u) if u.disabled => Err(Error::Unauthenticated("this account is disabled".into())),
            Some(mut u) => {
                if u.email != id.email || (role_admin && !u.admin) {
                    u.email = id.email.clone();
                    u.admin |= role_admin;
                    self.store.save_user(&u)?;
                }
                Ok(u)
            }
            None => {
                let u = UserRow { id: uid, email: id.email.clone(), password: None, admin: role_admin, disabled: false, created_ms: unix_ms_now(), quota: Default::default() };
                if !self.store.insert_user(&u)? {
                    // Made by a sign-in beside this one.
                    return self.store.user(&u.id)?.ok_or_else(unauthenticated);
                }
                tracing::info!(user = %u.id, admin = u.admin, "account made at its first Hypha sign-in: {}", hypha::describe(id));
                Ok(u)
            }
        }
    }

    /// Starts a browser login at the Hypha server (503 `hypha_unavailable` when it does not
    /// answer; 404 when Hypha sign-in is off).
    pub async fn hypha_login_start(self: &Arc<Self>) -> Result<hypha::LoginStart, Error> {
        self.run(|s| s.hypha_verifier()?.start_login()).await
    }

    /// Waits (at most [`hypha::MAX_CHECK_SECS`]) for the Hypha login of `key`; when it is
    /// complete, checks its token and starts a browser session. None: not yet.
    pub async fn hypha_login_check(self: &Arc<Self>, key: String, wait_secs: u64) -> Result<Option<IssuedSession>, Error> {
        self.run(move |s| {
            let Some(token) = s.hypha_verifier()?.check_login(&key, wait_secs)? else { return Ok(None) };
            let (user, _) = s.hypha_account(&token)?;
            s.audit(&user.id, "sign_in", &user.id, &format!("Hypha: a session ({})", user.email.as_deref().unwrap_or("no email")));
            s.start_session(&user).map(Some)
        })
        .await
    }

    fn hypha_verifier(&self) -> Result<&hypha::Verifier, Error> {
        self.access.hypha.as_ref().ok_or_else(|| Error::NotFound("Hypha sign-in is not configured on this server (hypha.server_url)".into()))
    }

    /// Checks a password sign-in (rate limited per account and per address; every failure
    /// looks the same), audits it either way (`what` it is for), and returns the account.
    fn check_password(&self, req: &SignIn, from: Option<IpAddr>, what: &str) -> Result<UserRow, Error> {
        let how = |outcome: &str| from.map_or_else(|| format!("password{outcome}"), |ip| format!("password{outcome}, from {ip}"));
        let now = Instant::now();
        if let Some(retry_after_secs) = self.access.limiter.blocked(&req.user, from, now) {
            return Err(Error::RateLimited { retry_after_secs });
        }
        let user = if req.user.len() <= 64 { self.store.user(&req.user)? } else { None };
        let stored = user.as_ref().filter(|u| !u.disabled).and_then(|u| u.password.as_deref());
        if !password::verify(&req.password, stored) {
            self.access.limiter.failed(&req.user, from, now);
            let tried: String = req.user.chars().take(64).collect();
            self.audit(&tried, "sign_in_failed", &tried, &how(""));
            return Err(Error::Unauthenticated("wrong user or password".into()));
        }
        // Verified against a stored hash: the account exists and is enabled.
        let user = user.ok_or_else(unauthenticated)?;
        self.audit(&user.id, "sign_in", &user.id, &how(&format!(": {what}")));
        Ok(user)
    }

    /// Signs in with a password and starts a browser session.
    pub async fn sign_in(self: &Arc<Self>, req: SignIn, from: Option<IpAddr>) -> Result<IssuedSession, Error> {
        self.run(move |s| {
            let user = s.check_password(&req, from, "a session")?;
            s.start_session(&user)
        })
        .await
    }

    /// Signs in with a password and makes an API token (the CLI's `hearth login`).
    pub async fn sign_in_token(self: &Arc<Self>, req: SignIn, from: Option<IpAddr>) -> Result<NewToken, Error> {
        self.run(move |s| {
            let user = s.check_password(&req, from, "a token")?;
            let ask = CreateToken { name: req.name.clone().unwrap_or_else(|| "sign-in".into()), scope: req.scope, expires_in_days: req.expires_in_days };
            s.make_token(&principal_of(&user), ask)
        })
        .await
    }

    /// Trades a one-time sign-in link's code for a browser session; the code stops working.
    pub async fn redeem_link(self: &Arc<Self>, code: String) -> Result<IssuedSession, Error> {
        let secret = Secret::parse(&code).ok_or_else(unauthenticated)?;
        self.run(move |s| {
            let row = s.store.credential(&secret.id)?.filter(|r| r.kind == Kind::Link && secret.matches(&r.digest)).ok_or_else(unauthenticated)?;
            // Used or not, it is spent.
            if !s.store.delete_credential(&row.id)? || row.expired(unix_ms_now()) {
                return Err(unauthenticated());
            }
            let user = s.store.user(&row.user)?.filter(|u| !u.disabled).ok_or_else(unauthenticated)?;
            s.audit(&user.id, "sign_in", &user.id, "one-time link: a session");
            s.start_session(&user)
        })
        .await
    }

    fn start_session(&self, user: &UserRow) -> Result<IssuedSession, Error> {
        let now = unix_ms_now();
        self.store.prune_credentials(now)?;
        let held = self.store.credentials(&user.id, Kind::Session)?;
        for old in held.iter().take((held.len() + 1).saturating_sub(MAX_SESSIONS)) {
            self.store.delete_credential(&old.id)?;
        }
        let hours = u64::from(self.config.auth.session_hours);
        let secret = Secret::mint()?;
        let principal = principal_of(user);
        let row = CredentialRow {
            csrf: Some(crate::random_hex(16)?),
            last_used_ms: Some(now),
            ..CredentialRow::new(&secret, Kind::Session, &user.id, "browser session", principal.scope, now, Some(now + hours * 3_600_000))
        };
        self.store.insert_credential(&row, u64::MAX)?;
        let auth = Authenticated { principal, credential: row.id.clone(), csrf: row.csrf.clone(), expires_ms: row.expires_ms };
        Ok(IssuedSession { session: auth.session(), secret: secret.expose(), max_age_secs: hours * 3600 })
    }

    /// Ends the session or revokes the token a request came with.
    pub async fn sign_out(self: &Arc<Self>, auth: &Authenticated) -> Result<(), Error> {
        let (id, user) = (auth.credential.clone(), auth.principal.user.clone());
        self.run(move |s| {
            s.store.delete_credential(&id)?;
            s.audit(&user, "sign_out", &user, &id);
            Ok(())
        })
        .await
    }

    /// A new API token for the caller, no more capable than the credential asking for it.
    pub async fn create_token(self: &Arc<Self>, who: &Principal, req: CreateToken) -> Result<NewToken, Error> {
        who.may(Scope::Write)?;
        let who = who.clone();
        self.run(move |s| s.make_token(&who, req)).await
    }

    fn make_token(&self, who: &Principal, req: CreateToken) -> Result<NewToken, Error> {
        let name = req.name.trim();
        if name.is_empty() || name.chars().count() > MAX_TOKEN_NAME || name.chars().any(char::is_control) {
            return Err(Error::invalid("name", format!("1-{MAX_TOKEN_NAME} printable characters")));
        }
        let scope = req.scope.unwrap_or(Scope::Write);
        if scope > who.scope || (scope == Scope::Admin && !who.is_admin()) {
            return Err(Error::Forbidden(format!("a `{}` token cannot be made with this credential", scope.as_str())));
        }
        let days = req.expires_in_days.unwrap_or(DEFAULT_TOKEN_DAYS);
        if days > MAX_TOKEN_DAYS {
            return Err(Error::invalid("expires_in_days", format!("0-{MAX_TOKEN_DAYS} (0: never)")));
        }
        let now = unix_ms_now();
        let secret = Secret::mint()?;
        let row = CredentialRow::new(&secret, Kind::Token, &who.user, name, scope, now, (days > 0).then(|| now + u64::from(days) * DAY_MS));
        self.store.prune_credentials(now)?;
        let max = self.config.auth.max_tokens_per_user;
        if !self.store.insert_credential(&row, max.into())? {
            return Err(Error::Conflict(format!("a user holds at most {max} tokens; revoke one first")));
        }
        self.audit(&who.user, "create_token", &row.id, &format!("{} ({})", row.name, scope.as_str()));
        Ok(NewToken { token: Token::from(&row), secret: secret.expose() })
    }

    /// The caller's API tokens (never their secrets).
    pub async fn tokens(self: &Arc<Self>, who: &Principal) -> Result<Vec<Token>, Error> {
        let who = who.clone();
        self.run(move |s| Ok(s.store.credentials(&who.user, Kind::Token)?.iter().filter(|c| !c.expired(unix_ms_now())).map(Token::from).collect())).await
    }

    /// Revokes a token: the caller's own, or any for an administrator.
    pub async fn revoke_token(self: &Arc<Self>, who: &Principal, id: &str) -> Result<(), Error> {
        who.may(Scope::Write)?;
        let (who, id) = (who.clone(), id.to_string());
        self.run(move |s| match s.store.credential(&id)? {
            Some(c) if c.kind == Kind::Token && who.sees(&c.user) => {
                s.store.delete_credential(&id)?;
                s.audit(&who.user, "revoke_token", &id, &format!("{}'s {}", c.user, c.name));
                Ok(())
            }
            _ => Err(Error::NotFound(format!("no token `{id}`"))),
        })
        .await
    }

    /// Every account (administrators).
    pub async fn users(self: &Arc<Self>, who: &Principal) -> Result<Vec<User>, Error> {
        who.must_be_admin()?;
        self.run(|s| Ok(s.store.users()?.iter().map(User::from).collect())).await
    }

    /// One account: the caller's own, or any for an administrator.
    pub async fn user(self: &Arc<Self>, who: &Principal, id: &str) -> Result<User, Error> {
        let (who, id) = (who.clone(), id.to_string());
        self.run(move |s| Ok(User::from(&s.visible_user(&who, &id)?))).await
    }

    pub(crate) fn visible_user(&self, who: &Principal, id: &str) -> Result<UserRow, Error> {
        match self.store.user(id)? {
            Some(u) if who.sees(&u.id) => Ok(u),
            _ => Err(Error::NotFound(format!("no user `{id}`"))),
        }
    }

    /// Makes an account (administrators).
    pub async fn create_user(self: &Arc<Self>, who: &Principal, req: CreateUser) -> Result<User, Error> {
        who.must_be_admin()?;
        check_user_id("id", &req.id)?;
        check_email(&req.email)?;
        if let Some(p) = &req.password {
            password::check("password", p)?;
        }
        let by = who.user.clone();
        self.run(move |s| {
            let row = UserRow {
                id: req.id.clone(),
                email: req.email,
                password: req.password.as_deref().map(password::hash).transpose()?,
                admin: req.admin,
                disabled: false,
                created_ms: unix_ms_now(),
                quota: Default::default(),
            };
            if !s.store.insert_user(&row)? {
                return Err(Error::Conflict(format!("user `{}` exists", req.id)));
            }
            tracing::info!(user = %row.id, admin = row.admin, "account created");
            s.audit(&by, "create_user", &row.id, if row.admin { "administrator" } else { "user" });
            Ok(User::from(&row))
        })
        .await
    }

    /// Changes an account. Users may change their own password, given the current one;
    /// administrators anything of anyone's (but cannot leave the server without one).
    pub async fn update_user(self: &Arc<Self>, who: &Principal, id: &str, req: UpdateUser) -> Result<User, Error> {
        who.may(Scope::Write)?;
        if let Some(p) = &req.password {
            password::check("password", p)?;
        }
        check_email(&req.email)?;
        let (who, id) = (who.clone(), id.to_string());
        self.run(move |s| {
            let mut row = s.visible_user(&who, &id)?;
            if !who.is_admin() {
                if req.email.is_some() || req.admin.is_some() || req.disabled.is_some() {
                    return Err(Error::Forbidden("only administrators may change this".into()));
                }
                if !password::verify(req.current_password.as_deref().unwrap_or_default(), row.password.as_deref()) {
                    return Err(Error::Forbidden("current_password is not this account's password".into()));
                }
            }
            let demoted = req.admin == Some(false) || req.disabled == Some(true);
            if demoted && row.admin && s.store.other_admins(&id)? == 0 {
                return Err(Error::Conflict(format!("`{id}` is the last administrator")));
            }
            if let Some(p) = &req.password {
                row.password = Some(password::hash(p)?);
            }
            row.email = req.email.clone().or(row.email);
            row.admin = req.admin.unwrap_or(row.admin);
            row.disabled = req.disabled.unwrap_or(row.disabled);
            if !s.store.save_user(&row)? {
                return Err(Error::NotFound(format!("no user `{id}`")));
            }
            let changed: Vec<String> = [
                req.password.as_ref().map(|_| "password".to_string()),
                req.email.as_ref().map(|e| format!("email={e}")),
                req.admin.map(|a| format!("admin={a}")),
                req.disabled.map(|d| format!("disabled={d}")),
            ]
            .into_iter()
            .flatten()
            .collect();
            s.audit(&who.user, "update_user", &id, &changed.join(" "));
            // A new password or a lost role ends the sessions that were signed in before it.
            if req.password.is_some() || demoted || req.admin == Some(false) {
                s.store.delete_credentials(&id, Kind::Session)?;
            }
            Ok(User::from(&row))
        })
        .await
    }

    /// Removes an account and every credential of it (administrators). Refused while it
    /// owns workstations, and for the last administrator.
    pub async fn delete_user(self: &Arc<Self>, who: &Principal, id: &str) -> Result<(), Error> {
        who.must_be_admin()?;
        let id = id.to_string();
        let by = who.user.clone();
        self.run(move |s| match s.store.delete_user(&id)? {
            Ok(true) => {
                s.audit(&by, "delete_user", &id, "");
                Ok(())
            }
            Ok(false) => Err(Error::NotFound(format!("no user `{id}`"))),
            Err(why) => Err(Error::Conflict(why)),
        })
        .await
    }

    /// At start: makes the first administrator when there is no account, keeps the
    /// administrator token file valid (making it when absent), and, while no administrator
    /// can sign in with a password, mints a one-time sign-in link (older links end).
    /// `given`: the administrator token to keep valid instead of the file's (the box's server
    /// is handed its host's).
    pub fn bootstrap(&self, data_dir: &Path, given: Option<&str>) -> Result<Bootstrap, Error> {
        let now = unix_ms_now();
        self.store.prune_credentials(now)?;
        let users = self.store.users()?;
        let admin = match users.iter().find(|u| u.admin && !u.disabled && u.id == FIRST_ADMIN).or_else(|| users.iter().find(|u| u.admin && !u.disabled)) {
            Some(a) => a.clone(),
            None => {
                // None at all (first start), or every administrator gone: the host's owner
                // gets one back.
                let mut a = self.store.user(FIRST_ADMIN)?.unwrap_or(UserRow {
                    id: FIRST_ADMIN.into(),
                    email: None,
                    password: None,
                    admin: true,
                    disabled: false,
                    created_ms: now,
                    quota: Default::default(),
                });
                (a.admin, a.disabled) = (true, false);
                if !self.store.insert_user(&a)? {
                    self.store.save_user(&a)?;
                }
                if users.is_empty() {
                    tracing::info!(user = %a.id, "first start: made the administrator account");
                } else {
                    tracing::warn!(user = %a.id, "no administrator left: made `{}` one", a.id);
                }
                a
            }
        };
        let file = self.config.auth.admin_token_path(data_dir);
        let secret = match given {
            Some(text) => Secret::parse(text.trim()).ok_or_else(|| Error::invalid("admin token", "not a hearth credential (hth_…)"))?,
            None => admin_token_file(&file)?,
        };
        let valid = self.store.credential(&secret.id)?.is_some_and(|r| r.kind == Kind::Token && secret.matches(&r.digest) && !r.expired(now) && r.user == admin.id);
        if !valid {
            // New, or brought to a fresh database (the box's server is handed its host's):
            // the token becomes valid here, for the administrator.
            self.store.delete_credential(&secret.id)?;
            let row = CredentialRow::new(&secret, Kind::Token, &admin.id, "admin.token", Scope::Admin, now, None);
            self.store.insert_credential(&row, u64::MAX)?;
        }
        let someone_signs_in = self.store.users()?.iter().any(|u| u.admin && !u.disabled && u.password.is_some());
        let link = if someone_signs_in {
            None
        } else {
            self.store.delete_credentials(&admin.id, Kind::Link)?;
            let secret = Secret::mint()?;
            let row = CredentialRow::new(&secret, Kind::Link, &admin.id, "first sign-in", Scope::Admin, now, Some(now + LINK_MS));
            self.store.insert_credential(&row, u64::MAX)?;
            Some(secret.expose())
        };
        Ok(Bootstrap { admin_token_file: file, link })
    }
}

/// The administrator token kept in `file` (mode 0600), made when the file is absent or holds
/// no credential.
pub fn admin_token_file(file: &Path) -> Result<Secret, Error> {
    if let Some(secret) = std::fs::read_to_string(file).ok().and_then(|t| Secret::parse(t.trim())) {
        return Ok(secret);
    }
    let secret = Secret::mint()?;
    hearth_fs::write_atomic_private(file, format!("{}\n", secret.expose()).as_bytes()).map_err(|e| Error::internal(e.to_string()))?;
    Ok(secret)
}

/// The principal an account signs in as, before a credential limits it.
fn principal_of(user: &UserRow) -> Principal {
    if user.admin {
        Principal::admin(&user.id)
    } else {
        Principal::user(&user.id)
    }
}
