//! Who a request comes from: its credential, checked by the service, as a [`Principal`].
//! The one place a request's identity is decided.
//!
//! A request carries `Authorization: Bearer <token>` (API tokens: the CLI, scripts; or a
//! Hypha token, when Hypha sign-in is on) or the session cookie (browsers). With an `Authorization` header the cookie is not looked at.
//! A cookie-authenticated request that changes something must also carry the session's CSRF
//! token in `X-CSRF-Token`: a cookie goes with cross-site requests, a custom header cannot
//! (the server allows no cross-origin requests). Origins and hosts are checked before this,
//! for every request (`layers::guard`).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use hearth_service::access::{Authenticated, Credential, HyphaCaller};
use hearth_service::{Error, Principal};

use super::error::HttpError;
use super::SharedService;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "hearth_session";
/// The header a cookie-authenticated request that changes something carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The header the Hypha bridge names the Hypha user it calls for in (JSON, as the Hypha
/// server gave it: `{id, email, roles, is_anonymous}`), with the bridge's key as its bearer
/// token (see `Service::authenticate_bridged`).
pub const HYPHA_CALLER_HEADER: &str = "x-hearth-hypha-caller";
/// Longest [`HYPHA_CALLER_HEADER`] taken, bytes.
const MAX_HYPHA_CALLER: usize = 4096;

/// Operations any client may call without a credential: the server's health and its
/// document, and the sign-ins themselves. Every other operation takes a [`Caller`] or a
/// [`Signed`] (the authorization test in `api/tests.rs` holds every documented operation to
/// this list).
pub const PUBLIC: &[(&str, &str)] = &[
    ("get", "/api/v1/health"),
    ("get", "/api/v1/openapi.json"),
    ("post", "/api/v1/auth/session"),
    ("post", "/api/v1/auth/token"),
    ("get", "/auth/link"),
    ("get", "/api/v1/auth/methods"),
    ("post", "/api/v1/auth/hypha/start"),
    ("post", "/api/v1/auth/hypha/check"),
];

/// The caller of a request.
pub struct Caller(pub Principal);

/// The caller with its credential (signing out ends that credential).
pub struct Signed(pub Authenticated);

impl FromRequestParts<SharedService> for Signed {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, svc: &SharedService) -> Result<Self, Self::Rejection> {
        if let Some(caller) = parts.headers.get(HYPHA_CALLER_HEADER) {
            return bridged(&parts.headers, caller, svc).await.map(Signed);
        }
        let presented = credential(&parts.headers)?;
        let auth = svc.authenticate(presented).await.map_err(HttpError::from)?;
        if matches!(presented, Credential::Session(_)) && changes_something(&parts.method) {
            let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            if !sent.is_some_and(|t| auth.csrf_matches(t)) {
                return Err(HttpError::from(Error::Forbidden(format!(
                    "a request signed in by cookie that changes something must carry the session's CSRF token in {CSRF_HEADER}"
                )))
                .with_code("csrf_failed"));
            }
        }
        Ok(Signed(auth))
    }
}

impl FromRequestParts<SharedService> for Caller {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, svc: &SharedService) -> Result<Self, Self::Rejection> {
        Signed::from_request_parts(parts, svc).await.map(|Signed(a)| Caller(a.principal))
    }
}

/// A call the Hypha bridge makes for a Hypha user: its bearer token must be the bridge's key.
async fn bridged(headers: &HeaderMap, caller: &HeaderValue, svc: &SharedService) -> Result<Authenticated, HttpError> {
    let Credential::Bearer(key) = credential(headers)? else {
        return Err(Error::Unauthenticated(format!("{HYPHA_CALLER_HEADER} comes with the bridge's bearer key only")).into());
    };
    let bad = || HttpError::from(Error::Unauthenticated(format!("{HYPHA_CALLER_HEADER} must be JSON {{id, email, roles, is_anonymous}}")));
    if caller.len() > MAX_HYPHA_CALLER {
        return Err(bad());
    }
    let caller: HyphaCaller = serde_json::from_slice(caller.as_bytes()).map_err(|_| bad())?;
    Ok(svc.authenticate_bridged(key, caller).await?)
}

/// Whether a request of method `m` may change something (what CSRF and Origin checks guard).
pub fn changes_something(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The credential a request presents. Malformed `Authorization` headers are refused as
/// such, whatever cookie comes with them.
fn credential(headers: &HeaderMap) -> Result<Credential<'_>, HttpError> {
    let none = || Error::Unauthenticated("sign in first: send `Authorization: Bearer <token>` (hearth login) or a session cookie".into());
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let text = value.to_str().map_err(|_| Error::Unauthenticated("the Authorization header is not text".into()))?;
        let (scheme, token) = text.split_once(' ').unwrap_or((text, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Error::Unauthenticated("only `Authorization: Bearer <token>` is accepted".into()).into());
        }
        return Ok(Credential::Bearer(token.trim()));
    }
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='));
    cookie.map(Credential::Session).ok_or_else(|| none().into())
}

/// The client's address, when the request came over a socket (not in handler tests).
pub struct Peer(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())))
    }
}

/// The `Set-Cookie` value of a session: HttpOnly (no script reads it), SameSite=Lax (not sent
/// with cross-site requests other than top-level navigations), Secure when the server is
/// reached over HTTPS. `max_age` 0 removes it.
pub fn session_cookie(value: &str, max_age_secs: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}")).expect("cookies are header-safe")
}
