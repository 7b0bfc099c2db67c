//! Terminals in a workstation: create, list, close over REST, and the WebSocket that attaches
//! a client to one (docs/terminal-protocol.md).
//!
//! A terminal lives in the workstation's agent, not here: a server restart or a browser
//! reconnect re-attaches and gets the exact screen back. Each WebSocket client's output is
//! queued by the agent, bounded; one that falls behind is told (`lagged`) and disconnected,
//! never slowing the shell or the other clients.

use std::time::{Duration, Instant};

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use hearth_exec::PtyEvent;
use hearth_proto::api::{CreateTerminal, ErrorBody, Terminal, TerminalList, WsClientMessage, WsServerMessage};
use hearth_proto::control::{validate_size, DATA_CHUNK};
use serde::Deserialize;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use hearth_service::terminals::AttachMode;

use super::error::HttpError;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::{Caller, SharedService};

/// Largest WebSocket message a client may send (keystrokes and control).
pub const MAX_WS_MESSAGE: usize = 64 << 10;
/// Keystrokes (framed) a client may have sent that the agent has not taken yet; beyond it
/// the client is not read until the agent catches up.
const MAX_PENDING_INPUT: usize = 1 << 20;
const HEARTBEAT: Duration = Duration::from_secs(20);
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(60);
/// A client that takes no bytes for this long is dropped (a send would otherwise wait forever).
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends with a deadline; false when the client is gone or stalled.
async fn send_timed(socket: &mut WebSocket, m: Message) -> bool {
    matches!(tokio::time::timeout(SEND_TIMEOUT, socket.send(m)).await, Ok(Ok(())))
}

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
    Ok(ws
        .read_buffer_size(hearth_proto::api::WS_READ_BUFFER)
        .max_message_size(MAX_WS_MESSAGE)
        .max_frame_size(MAX_WS_MESSAGE)
        .on_upgrade(move |socket| pump(socket, stream, read_only, stopping)))
}

/// Returns once the server begins to stop.
async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

fn text(m: &WsServerMessage) -> Message {
    Message::Text(serde_json::to_string(m).expect("messages serialize").into())
}

/// What the client is sent for the events of one read from the agent: output runs joined
/// into messages of up to [`DATA_CHUNK`] (under a flood, fewer and larger writes to the
/// client), and whether the stream ends there (and why, and whether it was asked for).
fn to_messages(events: Vec<PtyEvent>) -> (Vec<Message>, Option<(&'static str, bool)>) {
    let mut out = Vec::new();
    let mut data: Vec<u8> = Vec::new();
    let flush = |data: &mut Vec<u8>, out: &mut Vec<Message>| {
        if !data.is_empty() {
            out.push(Message::Binary(std::mem::take(data).into()));
        }
    };
    for ev in events {
        match ev {
            PtyEvent::Output(b) => {
                if data.len() + b.len() > DATA_CHUNK {
                    flush(&mut data, &mut out);
                }
                data.extend_from_slice(&b);
            }
            PtyEvent::Resized { rows, cols } => {
                flush(&mut data, &mut out);
                out.push(text(&WsServerMessage::Resize { rows, cols }));
            }
            PtyEvent::Exited(st) => {
                flush(&mut data, &mut out);
                out.push(text(&WsServerMessage::Exit { code: st.code, signal: st.signal }));
                return (out, Some(("the terminal's command ended", true)));
            }
            // Dropped by the agent: this client's queue there filled.
            PtyEvent::Lagged => {
                flush(&mut data, &mut out);
                out.push(text(&WsServerMessage::Lagged));
                return (out, Some(("the client lagged (the agent's queue)", false)));
            }
            PtyEvent::Closed => break,
        }
    }
    flush(&mut data, &mut out);
    (out, None)
}

/// The connection to the agent, waited on for reading only.
///
/// Not a `tokio::net::UnixStream`: that waits for both directions, and a unix socket signals
/// "writable" each time its peer (Firecracker) takes bytes from it, so every keystroke would
/// wake the server once more for nothing. Writes go straight to the socket; only while some
/// keystrokes wait for room is a second handle on it ([`Room`]) waited on for writing.
struct AgentConn(AsyncFd<UnixStream>);

/// A duplicate of the agent connection's descriptor, waited on for writing while keystrokes
/// are held back; dropped (and so no longer waited on) once they are written.
struct Room(AsyncFd<OwnedFd>);

impl AgentConn {
    fn new(conn: UnixStream) -> std::io::Result<AgentConn> {
        conn.set_read_timeout(None)?;
        conn.set_nonblocking(true)?;
        // SAFETY: the AsyncFd owns the stream, whose descriptor stays open and the same until
        // the AsyncFd drops it.
        Ok(AgentConn(unsafe { AsyncFd::register_with_interest(conn, Interest::READABLE) }?))
    }

    /// Reads what the agent sent; cancel-safe (nothing is taken until a read succeeds).
    async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let mut ready = self.0.readable().await?;
            if let Ok(read) = ready.try_io(|conn| conn.get_ref().read(buf)) {
                return read;
            }
        }
    }

    /// Writes what the socket takes of `bytes` now; 0 when it takes nothing yet.
    fn try_write(&self, bytes: &[u8]) -> std::io::Result<usize> {
        match self.0.get_ref().write(bytes) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(0),
            r => r,
        }
    }

    /// Writes what the socket takes of `pending` now and drains it; what is left, if
    /// anything, waits for the [`Room`] this returns.
    fn write_now(&self, pending: &mut Vec<u8>) -> std::io::Result<Option<Room>> {
        let n = self.try_write(pending)?;
        pending.drain(..n);
        if pending.is_empty() {
            return Ok(None);
        }
        let fd = std::os::fd::AsFd::as_fd(self.0.get_ref()).try_clone_to_owned()?;
        // SAFETY: as in `new`: the AsyncFd owns this duplicate until it drops it.
        Ok(Some(Room(unsafe { AsyncFd::register_with_interest(fd, Interest::WRITABLE) }?)))
    }

    /// Writes some of `bytes` once the socket has room (at least one byte written, or an
    /// error); with no room to wait on (nothing held back), never.
    async fn write(&self, room: Option<&Room>, bytes: &[u8]) -> std::io::Result<usize> {
        let Some(room) = room else { return std::future::pending().await };
        loop {
            let mut ready = room.0.writable().await?;
            match self.try_write(bytes)? {
                0 => ready.clear_ready(),
                n => return Ok(n),
            }
        }
    }
}

/// Bridges one WebSocket client and one attachment to the agent, in this task alone: the
/// agent's connection is read and written here (no thread between them and the socket, one
/// wake per keystroke each way). Keystrokes not yet taken by the agent are held up to
/// [`MAX_PENDING_INPUT`]; beyond it the client is not read until they are. The client is never
/// queued output here: while a send waits on it, the agent queues this client's output (up to
/// its per-reader bound, then drops it as lagged), and a send that waits [`SEND_TIMEOUT`]
/// drops it as stalled; neither holds up the shell or other clients.
async fn pump(mut socket: WebSocket, mut stream: hearth_exec::PtyStream<std::os::unix::net::UnixStream>, read_only: bool, mut stopping: tokio::sync::watch::Receiver<bool>) {
    let mut replay = std::mem::take(&mut stream.scrollback);
    replay.extend_from_slice(&stream.screen);
    let head = WsServerMessage::Attached { rows: stream.info.rows, cols: stream.info.cols, title: stream.info.title.clone(), read_only, replay_bytes: replay.len() as u64 };
    // The decoder keeps what the agent sent that is not yet a whole frame.
    let (id, conn, mut decoder) = stream.into_parts();
    // Kept to shut the connection down at the end (the agent detaches this reader then).
    let Ok(closer) = conn.try_clone() else { return };
    let Ok(agent) = AgentConn::new(conn) else {
        let _ = closer.shutdown(std::net::Shutdown::Both);
        return;
    };
    let mut sent = send_timed(&mut socket, text(&head)).await;
    for chunk in replay.chunks(DATA_CHUNK) {
        sent = sent && send_timed(&mut socket, Message::Binary(chunk.to_vec().into())).await;
    }
    if !sent {
        let _ = closer.shutdown(std::net::Shutdown::Both);
        return;
    }
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    let mut last_heard = Instant::now();
    let mut chunk = vec![0u8; DATA_CHUNK];
    // Keystrokes and resizes, framed, not yet written to the agent; while there are any, the
    // connection is also waited on for room.
    let mut pending: Vec<u8> = Vec::new();
    let mut room: Option<Room> = None;
    let (why, asked) = 'pump: loop {
        tokio::select! {
            msg = socket.recv(), if pending.len() < MAX_PENDING_INPUT => {
                let Some(Ok(msg)) = msg else { break ("the client went away", true) };
                last_heard = Instant::now();
                match msg {
                    Message::Binary(b) if !read_only => pending.extend_from_slice(&hearth_exec::stream::keys_bytes(&b)),
                    Message::Text(t) => match serde_json::from_str::<WsClientMessage>(&t) {
                        Ok(WsClientMessage::Resize { rows, cols }) if !read_only => {
                            if validate_size(rows, cols).is_ok() {
                                pending.extend_from_slice(&hearth_exec::stream::resize_bytes(&id, rows, cols));
                            }
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
                // Handed to the agent now when it takes them (the usual case), not on the
                // loop's next turn; what it does not take waits for the branch below.
                if room.is_none() && !pending.is_empty() {
                    match agent.write_now(&mut pending) {
                        Ok(r) => room = r,
                        Err(e) => {
                            tracing::warn!(error = %e, "writing to a terminal in the agent failed");
                            break ("keystrokes could not be written to the agent", false);
                        }
                    }
                }
            }
            written = agent.write(room.as_ref(), &pending), if room.is_some() => match written {
                Ok(n) => {
                    pending.drain(..n);
                    if pending.is_empty() {
                        room = None;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "writing to a terminal in the agent failed");
                    break ("keystrokes could not be written to the agent", false);
                }
            },
            read = agent.read(&mut chunk) => {
                let n = match read {
                    Ok(0) => break ("the agent's stream ended", false),
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading a terminal from the agent failed");
                        break ("the agent's stream ended", false);
                    }
                };
                let events = match decoder.decode(&chunk[..n]) {
                    Ok(ev) => ev,
                    Err(e) => {
                        tracing::warn!(error = %e, "the agent's terminal stream is not understood");
                        break ("the agent's stream ended", false);
                    }
                };
                let (messages, end) = to_messages(events);
                for m in messages {
                    if !send_timed(&mut socket, m).await { break 'pump ("sending to the client failed or stalled", false) }
                }
                if let Some(end) = end {
                    break end;
                }
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
    // Detach: the agent drops this reader.
    let _ = closer.shutdown(std::net::Shutdown::Both);
    let _ = send_timed(&mut socket, Message::Close(None)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_proto::control::ExitStatus;

    #[test]
    fn output_is_joined_up_to_a_chunk_and_an_end_ends_the_stream() {
        let out = |n: usize| PtyEvent::Output(vec![b'x'; n]);
        let sizes = |m: &[Message]| {
            m.iter()
                .map(|m| match m {
                    Message::Binary(b) => b.len(),
                    _ => 0,
                })
                .collect::<Vec<_>>()
        };
        let (m, end) = to_messages(vec![out(10), out(20), out(DATA_CHUNK - 30), out(1)]);
        assert_eq!((sizes(&m), end), (vec![DATA_CHUNK, 1], None));
        // A resize stays between the output around it.
        let (m, _) = to_messages(vec![out(1), PtyEvent::Resized { rows: 2, cols: 3 }, out(1)]);
        assert_eq!(sizes(&m), [1, 0, 1]);
        assert!(matches!(&m[1], Message::Text(t) if t.contains("resize")));
        // What follows an exit or a lag is not sent; the reason is given.
        let (m, end) = to_messages(vec![out(5), PtyEvent::Exited(ExitStatus { code: Some(3), signal: None }), out(7)]);
        assert_eq!((sizes(&m), end), (vec![5, 0], Some(("the terminal's command ended", true))));
        assert!(matches!(&m[1], Message::Text(t) if t.contains("\"code\":3")));
        let (m, end) = to_messages(vec![PtyEvent::Lagged]);
        assert_eq!(end.map(|e| e.1), Some(false));
        assert!(matches!(&m[0], Message::Text(t) if t.contains("lagged")));
    }
}
