//! Terminals in a workstation: create, list, close over REST, and the WebSocket that attaches
//! a client to one (docs/terminal-protocol.md).
//!
//! A terminal lives in the workstation's agent, not here: a server restart or a browser
//! reconnect re-attaches and gets the exact screen back. Each WebSocket client has a bounded
//! queue; one that falls behind is told (`lagged`) and disconnected, never slowing the shell
//! or the other clients.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use hearth_exec::{ExecError, PtyEvent};
use hearth_proto::api::{CreateTerminal, ErrorBody, Terminal, TerminalList, WsClientMessage, WsServerMessage};
use hearth_proto::control::{validate_size, PtyInfo, PtySpec, Request};
use serde::Deserialize;

use super::error::ApiError;
use super::json::ApiJson;
use crate::app::{blocking, SharedApp};
use crate::store::TerminalRow;
use hearth_proto::unix_ms_now;

/// Largest WebSocket message a client may send (keystrokes and control).
pub const MAX_WS_MESSAGE: usize = 64 << 10;
/// Output chunks queued for one WebSocket client before it counts as too slow.
const CLIENT_QUEUE: usize = 512;
const HEARTBEAT: Duration = Duration::from_secs(20);
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(60);
/// A client that takes no bytes for this long is dropped (a send would otherwise wait forever).
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends with a deadline; false when the client is gone or stalled.
async fn send_timed(socket: &mut WebSocket, m: Message) -> bool {
    matches!(tokio::time::timeout(SEND_TIMEOUT, socket.send(m)).await, Ok(Ok(())))
}

fn to_api(ws: &str, p: PtyInfo) -> Terminal {
    Terminal {
        id: p.id,
        workstation_id: ws.into(),
        rows: p.rows,
        cols: p.cols,
        argv: p.argv,
        user: p.user,
        created_unix_ms: p.created_unix_ms,
        attached: p.attached,
        title: p.title,
        exit_code: p.exited.and_then(|e| e.code),
        exit_signal: p.exited.and_then(|e| e.signal),
        exited: p.exited.is_some(),
        ended_unix_ms: None,
    }
}

/// An ended session, from its record.
fn ended(ws: &str, r: TerminalRow) -> Terminal {
    Terminal {
        id: r.id,
        workstation_id: ws.into(),
        rows: r.rows,
        cols: r.cols,
        argv: r.argv,
        user: r.user,
        created_unix_ms: r.created_ms,
        attached: 0,
        title: String::new(),
        exit_code: None,
        exit_signal: None,
        exited: true,
        ended_unix_ms: r.ended_ms,
    }
}

fn agent_error(e: ExecError) -> ApiError {
    match e {
        ExecError::Refused(m) if m.contains("no pty session") => ApiError::not_found(m),
        ExecError::Refused(m) => ApiError::bad_request(m),
        e => ApiError::internal(format!("the workstation's agent: {e}")),
    }
}

/// Opens a terminal.
#[utoipa::path(post, path = "/api/v1/workstations/{id}/terminals", params(("id" = String, Path)), request_body = CreateTerminal,
    responses((status = 201, body = Terminal), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(State(app): State<SharedApp>, Path(id): Path<String>, ApiJson(req): ApiJson<CreateTerminal>) -> Result<(StatusCode, Json<Terminal>), ApiError> {
    let (rows, cols) = (req.rows.unwrap_or(24), req.cols.unwrap_or(80));
    validate_size(rows, cols).map_err(|m| ApiError::invalid(if rows == 0 || rows > hearth_proto::control::MAX_ROWS { "rows" } else { "cols" }, m))?;
    let user = req.user.unwrap_or_else(|| app.config.defaults.user.clone());
    let spec = PtySpec { argv: req.argv, user: Some(user), rows, cols, ..PtySpec::default() };
    spec.validate().map_err(|m| ApiError::invalid("argv", m))?;
    let t = blocking(move || {
        let info = app.agent(&id)?.pty_open(spec).map_err(agent_error)?;
        let record = TerminalRow { id: info.id.clone(), argv: info.argv.clone(), user: info.user.clone(), rows: info.rows, cols: info.cols, created_ms: info.created_unix_ms, ended_ms: None };
        app.store.open_terminal(&id, &record, unix_ms_now())?;
        Ok(to_api(&id, info))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(t)))
}

/// Lists a workstation's terminals: the sessions it runs now, then the records of ended ones
/// (closed, or lost when it stopped), newest last.
#[utoipa::path(get, path = "/api/v1/workstations/{id}/terminals", params(("id" = String, Path)),
    responses((status = 200, body = TerminalList), (status = 404, body = ErrorBody)))]
pub async fn list(State(app): State<SharedApp>, Path(id): Path<String>) -> Result<Json<TerminalList>, ApiError> {
    let terminals = blocking(move || {
        let live = match app.agent(&id) {
            Ok(mut agent) => agent.pty_list().map_err(agent_error)?,
            // Not running: nothing is live.
            Err(e) if e.status == StatusCode::CONFLICT => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut records = app.store.terminals(&id)?;
        // Records whose session the agent no longer has ended with their VM.
        let gone: Vec<&str> = records.iter().filter(|r| r.ended_ms.is_none() && !live.iter().any(|p| p.id == r.id)).map(|r| r.id.as_str()).collect();
        if !gone.is_empty() {
            app.store.end_terminals(&id, &gone, false, unix_ms_now())?;
            records = app.store.terminals(&id)?;
        }
        let mut out: Vec<Terminal> = live.into_iter().map(|p| to_api(&id, p)).collect();
        out.extend(records.into_iter().filter(|r| r.ended_ms.is_some()).map(|r| ended(&id, r)));
        Ok(out)
    })
    .await?;
    Ok(Json(TerminalList { terminals }))
}

/// Closes a terminal (its processes are hung up, then killed).
#[utoipa::path(delete, path = "/api/v1/workstations/{id}/terminals/{tid}", params(("id" = String, Path), ("tid" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn close(State(app): State<SharedApp>, Path((id, tid)): Path<(String, String)>) -> Result<StatusCode, ApiError> {
    blocking(move || {
        app.agent(&id)?.pty_ok(&Request::PtyClose { id: tid.clone() }).map_err(agent_error)?;
        app.store.end_terminals(&id, &[&tid], true, unix_ms_now())?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AttachQuery {
    /// `view`: read-only (keystrokes and resizes are ignored).
    pub mode: Option<String>,
}

/// Attaches a WebSocket to a terminal (docs/terminal-protocol.md).
#[utoipa::path(get, path = "/api/v1/workstations/{id}/terminals/{tid}/ws", params(("id" = String, Path), ("tid" = String, Path), AttachQuery),
    responses((status = 101, description = "WebSocket"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn attach(State(app): State<SharedApp>, Path((id, tid)): Path<(String, String)>, Query(q): Query<AttachQuery>, ws: WebSocketUpgrade) -> Result<Response, ApiError> {
    let read_only = match q.mode.as_deref() {
        None | Some("write") => false,
        Some("view") => true,
        Some(other) => return Err(ApiError::invalid("mode", format!("`{other}`: expected view or write"))),
    };
    // Attach before upgrading, so an unknown terminal is a plain 404.
    let stopping = app.stopping.subscribe();
    let stream = blocking(move || app.agent(&id)?.pty_attach(&tid, None, read_only).map_err(agent_error)).await?;
    Ok(ws.max_message_size(MAX_WS_MESSAGE).max_frame_size(MAX_WS_MESSAGE).on_upgrade(move |socket| pump(socket, stream, read_only, stopping)))
}

/// Keystrokes and resizes for the attachment's writer thread.
enum In {
    Keys(Vec<u8>),
    Resize(u16, u16),
}

/// The held event if there is one, else the next from the queue.
async fn next_event(held: &mut Option<PtyEvent>, rx: &mut tokio::sync::mpsc::Receiver<PtyEvent>) -> Option<PtyEvent> {
    match held.take() {
        Some(ev) => Some(ev),
        None => rx.recv().await,
    }
}

/// Returns once the server begins to stop.
async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

fn text(m: &WsServerMessage) -> Message {
    Message::Text(serde_json::to_string(m).expect("messages serialize").into())
}

async fn pump(mut socket: WebSocket, mut stream: hearth_exec::PtyStream<std::os::unix::net::UnixStream>, read_only: bool, mut stopping: tokio::sync::watch::Receiver<bool>) {
    let mut replay = std::mem::take(&mut stream.scrollback);
    replay.extend_from_slice(&stream.screen);
    let head = WsServerMessage::Attached { rows: stream.info.rows, cols: stream.info.cols, title: stream.info.title.clone(), read_only, replay_bytes: replay.len() as u64 };
    let Ok(mut input) = stream.input() else { return };
    let closer = match stream.input() {
        Ok(c) => c,
        Err(_) => return,
    };
    if !send_timed(&mut socket, text(&head)).await {
        closer.close();
        return;
    }
    for chunk in replay.chunks(hearth_proto::control::DATA_CHUNK) {
        if !send_timed(&mut socket, Message::Binary(chunk.to_vec().into())).await {
            closer.close();
            return;
        }
    }
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<PtyEvent>(CLIENT_QUEUE);
    let lagged = Arc::new(AtomicBool::new(false));
    {
        let lagged = lagged.clone();
        std::thread::spawn(move || loop {
            let ev = stream.next(None).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "reading a terminal from the agent failed");
                PtyEvent::Closed
            });
            let end = matches!(ev, PtyEvent::Exited(_) | PtyEvent::Lagged | PtyEvent::Closed);
            match out_tx.try_send(ev) {
                Ok(()) => {}
                Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                    // This client is too slow: drop it, never the shell.
                    lagged.store(true, Ordering::SeqCst);
                    return;
                }
                Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => return,
            }
            if end {
                return;
            }
        });
    }
    let (in_tx, in_rx) = std::sync::mpsc::channel::<In>();
    std::thread::spawn(move || {
        for m in in_rx {
            let r = match m {
                In::Keys(k) => input.write(&k),
                In::Resize(r, c) => input.resize(r, c),
            };
            if let Err(e) = r {
                tracing::warn!(error = %e, "writing to a terminal in the agent failed");
                return;
            }
        }
    });
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    let mut last_heard = Instant::now();
    // An event taken from the queue that did not fit in the message before it.
    let mut held: Option<PtyEvent> = None;
    let (why, asked) = loop {
        tokio::select! {
            msg = socket.recv() => {
                let Some(Ok(msg)) = msg else { break ("the client went away", true) };
                last_heard = Instant::now();
                match msg {
                    Message::Binary(b) if !read_only && in_tx.send(In::Keys(b.to_vec())).is_err() => break ("keystrokes could not be written to the agent", false),
                    Message::Text(t) => match serde_json::from_str::<WsClientMessage>(&t) {
                        Ok(WsClientMessage::Resize { rows, cols }) if !read_only => {
                            if validate_size(rows, cols).is_ok() && in_tx.send(In::Resize(rows, cols)).is_err() { break ("a resize could not be written to the agent", false) }
                        }
                        Ok(WsClientMessage::Ping) => {
                            if !send_timed(&mut socket, text(&WsServerMessage::Pong)).await { break ("sending to the client failed or stalled", false) }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            let _ = send_timed(&mut socket, text(&WsServerMessage::Error { message: format!("bad control message: {e}") })).await;
                        }
                    },
                    Message::Close(_) => break ("the client closed", true),
                    _ => {}
                }
            }
            out = next_event(&mut held, &mut out_rx) => {
                let msg = match out {
                    Some(PtyEvent::Output(mut b)) => {
                        // Output queued meanwhile goes in the same message: under a flood,
                        // fewer and larger writes to the client.
                        while let Ok(next) = out_rx.try_recv() {
                            match next {
                                PtyEvent::Output(more) if b.len() + more.len() <= hearth_proto::control::DATA_CHUNK => b.extend_from_slice(&more),
                                other => {
                                    held = Some(other);
                                    break;
                                }
                            }
                        }
                        Message::Binary(b.into())
                    }
                    Some(PtyEvent::Resized { rows, cols }) => text(&WsServerMessage::Resize { rows, cols }),
                    Some(PtyEvent::Exited(st)) => {
                        let _ = send_timed(&mut socket, text(&WsServerMessage::Exit { code: st.code, signal: st.signal })).await;
                        break ("the terminal's command ended", true);
                    }
                    // Dropped by the agent, or by our own queue: either way this client lagged.
                    Some(PtyEvent::Lagged) => {
                        let _ = send_timed(&mut socket, text(&WsServerMessage::Lagged)).await;
                        break ("the client lagged (the agent's queue)", false);
                    }
                    None if lagged.load(Ordering::SeqCst) => {
                        let _ = send_timed(&mut socket, text(&WsServerMessage::Lagged)).await;
                        break ("the client lagged (the server's queue)", false);
                    }
                    Some(PtyEvent::Closed) | None => break ("the agent's stream ended", false),
                };
                if !send_timed(&mut socket, msg).await { break ("sending to the client failed or stalled", false) }
            }
            // The server is stopping: the client reconnects to the next one, the session lives on.
            _ = stopped(&mut stopping) => break ("the server is stopping", true),
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > HEARTBEAT_TIMEOUT { break ("the client was silent too long", false) }
                if !send_timed(&mut socket, Message::Ping(Vec::new().into())).await { break ("sending to the client failed or stalled", false) }
            }
        }
    };
    // Why each attachment ended, so a dropped terminal can be explained afterwards; the
    // ends a client did not ask for are warnings.
    if asked {
        tracing::info!(why, "a WebSocket terminal client detached");
    } else {
        tracing::warn!(why, "a WebSocket terminal client was dropped");
    }
    // Detach: the reader thread sees its stream end; the writer thread its channel.
    closer.close();
    let _ = send_timed(&mut socket, Message::Close(None)).await;
}
