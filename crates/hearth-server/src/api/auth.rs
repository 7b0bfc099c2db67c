//! Signing in and out: `/api/v1/auth/session` (a browser session in a cookie),
//! `/api/v1/auth/token` (an API token for the CLI and scripts) and `/auth/link` (the one-time
//! link the server prints at first start), and `/api/v1/auth/hypha/*` (signing in with a
//! Hypha account: start, then check, as the seed's page does).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hearth_proto::api::{ErrorBody, HyphaCheck, HyphaLogin, HyphaPending, NewToken, Session, SignIn, SignInMethods};
use serde::Deserialize;

use super::caller::{session_cookie, Peer, Signed};
use super::error::HttpError;
use super::extract::{ApiJson, ApiQuery};
use super::SharedService;

/// Signs in with a password: answers who signed in (with the CSRF token to send back) and
/// sets the session cookie.
#[utoipa::path(post, path = "/api/v1/auth/session", request_body = SignIn,
    responses((status = 200, body = Session), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn sign_in(State(svc): State<SharedService>, Peer(from): Peer, ApiJson(req): ApiJson<SignIn>) -> Result<Response, HttpError> {
    let issued = svc.sign_in(req, from).await?;
    let cookie = session_cookie(&issued.secret, issued.max_age_secs, svc.config.secure_cookies());
    Ok(([(header::SET_COOKIE, cookie)], Json(issued.session)).into_response())
}

/// Who the caller is, and with what credential.
#[utoipa::path(get, path = "/api/v1/auth/session", responses((status = 200, body = Session)))]
pub async fn whoami(Signed(auth): Signed) -> Json<Session> {
    Json(auth.session())
}

/// Signs out: ends the session (and removes its cookie), or revokes the API token the
/// request came with.
#[utoipa::path(delete, path = "/api/v1/auth/session", responses((status = 204)))]
pub async fn sign_out(State(svc): State<SharedService>, Signed(auth): Signed) -> Result<Response, HttpError> {
    svc.sign_out(&auth).await?;
    let clear = session_cookie("", 0, svc.config.secure_cookies());
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear)]).into_response())
}

/// Signs in with a password and makes an API token (shown once): `hearth login`.
#[utoipa::path(post, path = "/api/v1/auth/token", request_body = SignIn,
    responses((status = 201, body = NewToken), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn sign_in_token(State(svc): State<SharedService>, Peer(from): Peer, ApiJson(req): ApiJson<SignIn>) -> Result<(StatusCode, Json<NewToken>), HttpError> {
    Ok((StatusCode::CREATED, Json(svc.sign_in_token(req, from).await?)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LinkQuery {
    /// The one-time code the server printed.
    code: String,
}

/// A one-time sign-in link (printed at first start, while no administrator has a password):
/// signs the browser in and sends it to the start page.
#[utoipa::path(get, path = "/auth/link", params(LinkQuery), responses((status = 303, description = "signed in; to `/`"), (status = 401, body = ErrorBody)))]
pub async fn link(State(svc): State<SharedService>, ApiQuery(q): ApiQuery<LinkQuery>) -> Result<Response, HttpError> {
    let issued = svc.redeem_link(q.code).await?;
    let cookie = session_cookie(&issued.secret, issued.max_age_secs, svc.config.secure_cookies());
    Ok((StatusCode::SEE_OTHER, [(header::SET_COOKIE, cookie), (header::LOCATION, "/".parse().expect("a path"))]).into_response())
}

/// How one may sign in here: with a password, and with Hypha when a server is configured.
#[utoipa::path(get, path = "/api/v1/auth/methods", responses((status = 200, body = SignInMethods)))]
pub async fn methods(State(svc): State<SharedService>) -> Json<SignInMethods> {
    let hypha = &svc.config.hypha;
    Json(SignInMethods { password: true, hypha_server: hypha.enabled().then(|| hypha.server_url.clone()) })
}

/// Starts signing in with Hypha: open `login_url` (a popup), then check `key`.
#[utoipa::path(post, path = "/api/v1/auth/hypha/start",
    responses((status = 200, body = HyphaLogin), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn hypha_start(State(svc): State<SharedService>) -> Result<Json<HyphaLogin>, HttpError> {
    let start = svc.hypha_login_start().await?;
    Ok(Json(HyphaLogin { login_url: start.login_url, key: start.key }))
}

/// Whether a Hypha login is complete: 200 with the session (and its cookie) when it is, 202
/// while it is not. 403 `not_on_allowlist` for an account the server's allowlist does not
/// admit; 503 `hypha_unavailable` when the Hypha server does not answer.
#[utoipa::path(post, path = "/api/v1/auth/hypha/check", request_body = HyphaCheck,
    responses((status = 200, body = Session), (status = 202, body = HyphaPending), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn hypha_check(State(svc): State<SharedService>, ApiJson(req): ApiJson<HyphaCheck>) -> Result<Response, HttpError> {
    match svc.hypha_login_check(req.key, req.wait_secs.unwrap_or(0)).await? {
        Some(issued) => {
            let cookie = session_cookie(&issued.secret, issued.max_age_secs, svc.config.secure_cookies());
            Ok(([(header::SET_COOKIE, cookie)], Json(issued.session)).into_response())
        }
        None => Ok((StatusCode::ACCEPTED, Json(HyphaPending { status: "pending".into() })).into_response()),
    }
}
