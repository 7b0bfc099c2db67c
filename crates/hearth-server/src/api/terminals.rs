//! Terminals in a workstation: create, list, close over REST, and the WebSocket upgrade that
//! attaches a client to one (the bridge itself is `bridge.rs`; docs/terminal-protocol.md).
//!
//! A terminal lives in the workstation's agent, not here: a server restart or a browser
//! reconnect re-attaches and gets the exact screen back.

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use hearth_proto::api::{CreateTerminal, ErrorBody, Terminal, TerminalList};
use serde::Deserialize;

use hearth_service::terminals::AttachMode;

use super::bridge::{pump, MAX_WS_MESSAGE};
use super::error::HttpError;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::{Caller, SharedService};

/// Opens a terminal.
#[utoipa::path(post, path = "/api/v1/workstations/{id}/terminals", params(("id" = String, Path)), request_body = CreateTerminal,
    responses((status = 201, body = Terminal), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(
    State(svc): State<SharedService>,
    Caller(who): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<CreateTerminal>,
) -> Result<(StatusCode, Json<Terminal>), HttpError> {
    Ok((StatusCode::CREATED, Json(svc.open_terminal(&who, &id, req).await?)))
}

/// Lists a workstation's terminals: the sessions it runs now, then the records of ended ones
/// (closed, or lost when it stopped), newest last.
#[utoipa::path(get, path = "/api/v1/workstations/{id}/terminals", params(("id" = String, Path)),
    responses((status = 200, body = TerminalList), (status = 404, body = ErrorBody)))]
pub async fn list(State(svc): State<SharedService>, Caller(who): Caller, ApiPath(id): ApiPath<String>) -> Result<Json<TerminalList>, HttpError> {
    Ok(Json(TerminalList { terminals: svc.terminals(&who, &id).await? }))
}

/// Closes a terminal (its processes are hung up, then killed).
#[utoipa::path(delete, path = "/api/v1/workstations/{id}/terminals/{tid}", params(("id" = String, Path), ("tid" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn close(State(svc): State<SharedService>, Caller(who): Caller, ApiPath((id, tid)): ApiPath<(String, String)>) -> Result<StatusCode, HttpError> {
    svc.close_terminal(&who, &id, &tid).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AttachQuery {
    /// `view`: read-only (keystrokes and resizes are ignored).
    pub mode: Option<String>,
}

/// Attaches a WebSocket to a terminal (docs/terminal-protocol.md).
#[utoipa::path(get, path = "/api/v1/workstations/{id}/terminals/{tid}/ws", params(("id" = String, Path), ("tid" = String, Path), AttachQuery),
    responses((status = 101, description = "WebSocket"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn attach(
    State(svc): State<SharedService>,
    Caller(who): Caller,
    ApiPath((id, tid)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<AttachQuery>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, HttpError> {
    // Not a WebSocket handshake: said in the API's error shape, not axum's plain text.
    let ws = ws.map_err(|e| {
        let code = if e.status() == StatusCode::UPGRADE_REQUIRED { "upgrade_required" } else { "bad_request" };
        HttpError::new(e.status(), code, e.body_text())
    })?;
    let mode = match q.mode.as_deref() {
        None | Some("write") => AttachMode::Write,
        Some("view") => AttachMode::View,
        Some(other) => return Err(HttpError::invalid("mode", format!("`{other}`: expected view or write"))),
    };
    // Attach before upgrading, so an unknown terminal is a plain 404.
    let stopping = svc.stopping();
    let stream = svc.attach_terminal(&who, &id, &tid, mode).await?;
    let read_only = mode == AttachMode::View;
    Ok(ws.read_buffer_size(hearth_proto::api::WS_READ_BUFFER).max_message_size(MAX_WS_MESSAGE).max_frame_size(MAX_WS_MESSAGE).on_upgrade(move |socket| async move {
        pump(socket, stream, read_only, stopping).await;
    }))
}
