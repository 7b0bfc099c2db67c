//! Terminals in a workstation: create, list, close over REST, and the WebSocket upgrade that
//! attaches a client to one (the bridge itself is `bridge.rs`; docs/terminal-protocol.md);
//! for clients that poll instead (scripts, AI agents, the Hypha bridge): input, output by
//! offset, screen, resize.
//!
//! A terminal lives in the workstation's agent, not here: a server restart or a browser
//! reconnect re-attaches and gets the exact screen back.

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use hearth_proto::api::{CreateTerminal, ErrorBody, Terminal, TerminalInput, TerminalList, TerminalOutput, TerminalScreen, TerminalSize};
use serde::Deserialize;

use hearth_service::terminals::{AttachMode, ReadFrom};

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

/// Types into a terminal, as if at its keyboard.
#[utoipa::path(post, path = "/api/v1/workstations/{id}/terminals/{tid}/input", params(("id" = String, Path), ("tid" = String, Path)), request_body = TerminalInput,
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn input(
    State(svc): State<SharedService>,
    Caller(who): Caller,
    ApiPath((id, tid)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<TerminalInput>,
) -> Result<StatusCode, HttpError> {
    svc.terminal_input(&who, &id, &tid, req.data).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct OutputQuery {
    /// The offset to read from: the previous read's `next` (default 0, the oldest kept).
    pub after: Option<u64>,
    /// At most this many bytes (default 65536, at most 1048576).
    pub max_bytes: Option<u32>,
    /// With nothing new yet, wait up to this long for output, milliseconds (at most 20000).
    pub wait_ms: Option<u32>,
}

/// A terminal's output from an offset on (long-polls with `wait_ms`).
#[utoipa::path(get, path = "/api/v1/workstations/{id}/terminals/{tid}/output", params(("id" = String, Path), ("tid" = String, Path), OutputQuery),
    responses((status = 200, body = TerminalOutput), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn output(
    State(svc): State<SharedService>,
    Caller(who): Caller,
    ApiPath((id, tid)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<OutputQuery>,
) -> Result<Json<TerminalOutput>, HttpError> {
    let from = ReadFrom { after: q.after.unwrap_or(0), max_bytes: q.max_bytes, wait_ms: q.wait_ms.unwrap_or(0) };
    Ok(Json(svc.terminal_output(&who, &id, &tid, from).await?))
}

/// What a terminal's screen shows now.
#[utoipa::path(get, path = "/api/v1/workstations/{id}/terminals/{tid}/screen", params(("id" = String, Path), ("tid" = String, Path)),
    responses((status = 200, body = TerminalScreen), (status = 404, body = ErrorBody)))]
pub async fn screen(State(svc): State<SharedService>, Caller(who): Caller, ApiPath((id, tid)): ApiPath<(String, String)>) -> Result<Json<TerminalScreen>, HttpError> {
    Ok(Json(svc.terminal_screen(&who, &id, &tid).await?))
}

/// Resizes a terminal.
#[utoipa::path(post, path = "/api/v1/workstations/{id}/terminals/{tid}/resize", params(("id" = String, Path), ("tid" = String, Path)), request_body = TerminalSize,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn resize(
    State(svc): State<SharedService>,
    Caller(who): Caller,
    ApiPath((id, tid)): ApiPath<(String, String)>,
    ApiJson(size): ApiJson<TerminalSize>,
) -> Result<StatusCode, HttpError> {
    svc.resize_terminal(&who, &id, &tid, size.rows, size.cols).await?;
    Ok(StatusCode::NO_CONTENT)
}
