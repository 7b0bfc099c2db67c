//! The WebSocket terminal bridge: one client ↔ one attachment to a terminal in the agent
//! (docs/terminal-protocol.md). Written over any `Stream + Sink` of WebSocket messages, so it
//! is tested with in-memory ones; the agent's side is the attachment's connection (a unix
//! socket to Firecracker's vsock, or to an agent on the host in tests), read and decoded with
//! the sans-I/O `hearth_exec::stream`.
//!
//! Each client's output is queued by the agent, bounded; one that falls behind is told
//! (`lagged`) and disconnected, never slowing the shell or the other clients.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use axum::extract::ws::Message;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use hearth_exec::stream::{keys_bytes, resize_bytes, Decoder};
use hearth_exec::{PtyEvent, PtyStream};
use hearth_proto::api::{WsClientMessage, WsServerMessage};
use hearth_proto::control::{validate_size, DATA_CHUNK};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Largest WebSocket message a client may send (keystrokes and control).
pub const MAX_WS_MESSAGE: usize = 64 << 10;
/// Keystrokes (framed) a client may have sent that the agent has not taken yet; beyond it
/// the client is not read until the agent catches up.
const MAX_PENDING_INPUT: usize = 1 << 20;
const HEARTBEAT: Duration = Duration::from_secs(20);
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(60);
/// A client that takes no bytes for this long is dropped (a send would otherwise wait forever).
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a bridge ended, and whether its client asked for it (the others are logged as warnings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct End {
    pub why: &'static str,
    pub asked: bool,
}

const STALLED: End = End { why: "sending to the client failed or stalled", asked: false };
const AGENT_ENDED: End = End { why: "the agent's stream ended", asked: false };
const KEYS_LOST: End = End { why: "keystrokes could not be written to the agent", asked: false };

/// Sends with a deadline; false when the client is gone or stalled.
async fn send_timed<S: Sink<Message> + Unpin>(socket: &mut S, m: Message) -> bool {
    let data = if let Message::Binary(b) = &m { b.len() } else { 0 };
    let sent = matches!(tokio::time::timeout(SEND_TIMEOUT, socket.send(m)).await, Ok(Ok(())));
    if sent && data > 0 {
        super::metrics::terminal_bytes("out", data);
    }
    sent
}

/// Returns once the server begins to stop (the guard `wait_for` gives is not kept: it is not `Send`).
async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

fn text(m: &WsServerMessage) -> Message {
    Message::Text(serde_json::to_string(m).expect("messages serialize").into())
}

/// What the client is sent for the events of one read from the agent: output runs joined
/// into messages of up to [`DATA_CHUNK`] (under a flood, fewer and larger writes to the
/// client), and whether the stream ends there (and why).
fn to_messages(events: Vec<PtyEvent>) -> (Vec<Message>, Option<End>) {
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
                return (out, Some(End { why: "the terminal's command ended", asked: true }));
            }
            // Dropped by the agent: this client's queue there filled.
            PtyEvent::Lagged => {
                flush(&mut data, &mut out);
                out.push(text(&WsServerMessage::Lagged));
                return (out, Some(End { why: "the client lagged (the agent's queue)", asked: false }));
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

    /// Waits for room, then writes some of `bytes` (at least one byte, or an error).
    async fn write(&self, room: &Room, bytes: &[u8]) -> std::io::Result<usize> {
        loop {
            let mut ready = room.0.writable().await?;
            match self.try_write(bytes)? {
                0 => ready.clear_ready(),
                n => return Ok(n),
            }
        }
    }
}

/// Keystrokes and resizes, framed, on their way to the agent: written at once when it takes
/// them (the usual case), else held (up to [`MAX_PENDING_INPUT`]) until it has room.
#[derive(Default)]
struct Keys {
    pending: Vec<u8>,
    room: Option<Room>,
}

impl Keys {
    /// Whether the client should not be read until the agent takes more.
    fn full(&self) -> bool {
        self.pending.len() >= MAX_PENDING_INPUT
    }

    /// Writes what the agent takes of what is pending now; what is left waits for room.
    fn hand_over(&mut self, agent: &AgentConn) -> std::io::Result<()> {
        if self.room.is_some() || self.pending.is_empty() {
            return Ok(());
        }
        let n = agent.try_write(&self.pending)?;
        self.pending.drain(..n);
        if !self.pending.is_empty() {
            let fd = std::os::fd::AsFd::as_fd(agent.0.get_ref()).try_clone_to_owned()?;
            // SAFETY: as in `AgentConn::new`: the AsyncFd owns this duplicate until it drops it.
            self.room = Some(Room(unsafe { AsyncFd::register_with_interest(fd, Interest::WRITABLE) }?));
        }
        Ok(())
    }

    /// Writes some of what is held once the agent has room; with nothing held, never.
    async fn drain(&mut self, agent: &AgentConn) -> std::io::Result<()> {
        let Some(room) = &self.room else { return std::future::pending().await };
        let n = agent.write(room, &self.pending).await?;
        self.pending.drain(..n);
        if self.pending.is_empty() {
            self.room = None;
        }
        Ok(())
    }
}

/// What a client's message asks of the bridge, beyond keys it adds to `keys`.
enum Reply {
    Nothing,
    Send(Message),
    End(End),
}

/// Handles one message from the client: keystrokes and resizes for the agent (ignored from a
/// viewer), a ping answered, a close.
fn from_client(msg: Message, id: &str, read_only: bool, keys: &mut Keys) -> Reply {
    match msg {
        Message::Binary(b) if !read_only => {
            super::metrics::terminal_bytes("in", b.len());
            keys.pending.extend_from_slice(&keys_bytes(&b));
        }
        Message::Text(t) => match serde_json::from_str::<WsClientMessage>(&t) {
            Ok(WsClientMessage::Resize { rows, cols }) if !read_only => {
                if validate_size(rows, cols).is_ok() {
                    keys.pending.extend_from_slice(&resize_bytes(id, rows, cols));
                }
            }
            Ok(WsClientMessage::Ping) => return Reply::Send(text(&WsServerMessage::Pong)),
            Ok(_) => {}
            Err(e) => return Reply::Send(text(&WsServerMessage::Error { message: format!("bad control message: {e}") })),
        },
        Message::Close(_) => return Reply::End(End { why: "the client closed", asked: true }),
        _ => {}
    }
    Reply::Nothing
}

/// Sends the client what one read from the agent holds; the end, if the stream ends there.
async fn to_client<S: Sink<Message> + Unpin>(socket: &mut S, decoder: &mut Decoder, read: std::io::Result<&[u8]>) -> Option<End> {
    let bytes = match read {
        Ok([]) => return Some(AGENT_ENDED),
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "reading a terminal from the agent failed");
            return Some(AGENT_ENDED);
        }
    };
    let events = match decoder.decode(bytes) {
        Ok(ev) => ev,
        Err(e) => {
            tracing::warn!(error = %e, "the agent's terminal stream is not understood");
            return Some(AGENT_ENDED);
        }
    };
    let (messages, end) = to_messages(events);
    for m in messages {
        if !send_timed(socket, m).await {
            return Some(STALLED);
        }
    }
    end
}

/// Bridges one client and one attachment, in this task alone: the agent's connection is read
/// and written here (no thread between them and the socket, one wake per keystroke each way).
/// First the session's size and title, then its replay (scrollback, then screen), then live
/// output both ways until either side ends or the server stops. The client is never queued
/// output here: while a send waits on it, the agent queues this client's output (up to its
/// per-reader bound, then drops it as lagged), and a send that waits [`SEND_TIMEOUT`] drops it
/// as stalled; neither holds up the shell or other clients. Returns why it ended.
pub async fn pump<S, E>(mut socket: S, mut stream: PtyStream<UnixStream>, read_only: bool, mut stopping: tokio::sync::watch::Receiver<bool>) -> End
where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin,
{
    let _attached = super::metrics::Attached::new();
    let mut replay = std::mem::take(&mut stream.scrollback);
    replay.extend_from_slice(&stream.screen);
    let head = WsServerMessage::Attached { rows: stream.info.rows, cols: stream.info.cols, title: stream.info.title.clone(), read_only, replay_bytes: replay.len() as u64 };
    // The decoder keeps what the agent sent that is not yet a whole frame.
    let (id, conn, mut decoder) = stream.into_parts();
    // Kept to shut the connection down at the end (the agent detaches this reader then).
    let Ok(closer) = conn.try_clone() else { return AGENT_ENDED };
    let end = match AgentConn::new(conn) {
        Ok(agent) => bridge(&mut socket, &agent, &mut decoder, &id, read_only, &head, &replay, &mut stopping).await,
        Err(_) => AGENT_ENDED,
    };
    if end.asked {
        tracing::info!(why = end.why, "a WebSocket terminal client detached");
    } else {
        tracing::warn!(why = end.why, "a WebSocket terminal client was dropped");
    }
    // Detach: the agent drops this reader.
    let _ = closer.shutdown(std::net::Shutdown::Both);
    let _ = send_timed(&mut socket, Message::Close(None)).await;
    end
}

#[allow(clippy::too_many_arguments)]
async fn bridge<S, E>(
    socket: &mut S,
    agent: &AgentConn,
    decoder: &mut Decoder,
    id: &str,
    read_only: bool,
    head: &WsServerMessage,
    replay: &[u8],
    stopping: &mut tokio::sync::watch::Receiver<bool>,
) -> End
where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin,
{
    let mut sent = send_timed(socket, text(head)).await;
    for chunk in replay.chunks(DATA_CHUNK) {
        sent = sent && send_timed(socket, Message::Binary(chunk.to_vec().into())).await;
    }
    if !sent {
        return STALLED;
    }
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    let mut last_heard = Instant::now();
    let mut chunk = vec![0u8; DATA_CHUNK];
    let mut keys = Keys::default();
    loop {
        tokio::select! {
            msg = socket.next(), if !keys.full() => {
                let Some(Ok(msg)) = msg else { return End { why: "the client went away", asked: true } };
                last_heard = Instant::now();
                match from_client(msg, id, read_only, &mut keys) {
                    Reply::Nothing => {}
                    Reply::Send(m) => if !send_timed(socket, m).await { return STALLED },
                    Reply::End(end) => return end,
                }
                if let Err(e) = keys.hand_over(agent) {
                    tracing::warn!(error = %e, "writing to a terminal in the agent failed");
                    return KEYS_LOST;
                }
            }
            drained = keys.drain(agent) => if let Err(e) = drained {
                tracing::warn!(error = %e, "writing to a terminal in the agent failed");
                return KEYS_LOST;
            },
            read = agent.read(&mut chunk) => {
                if let Some(end) = to_client(socket, decoder, read.map(|n| &chunk[..n])).await {
                    return end;
                }
            }
            // The server is stopping: the client reconnects to the next one, the session lives on.
            () = stopped(stopping) => return End { why: "the server is stopping", asked: true },
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > HEARTBEAT_TIMEOUT { return End { why: "the client was silent too long", asked: false } }
                if !send_timed(socket, Message::Ping(Vec::new().into())).await { return STALLED }
            }
        }
    }
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
        assert_eq!((sizes(&m), end), (vec![5, 0], Some(End { why: "the terminal's command ended", asked: true })));
        assert!(matches!(&m[1], Message::Text(t) if t.contains("\"code\":3")));
        let (m, end) = to_messages(vec![PtyEvent::Lagged]);
        assert_eq!(end.map(|e| e.asked), Some(false));
        assert!(matches!(&m[0], Message::Text(t) if t.contains("lagged")));
    }

    /// A WebSocket in memory: what the test sends, the bridge reads; what the bridge sends,
    /// the test reads.
    struct MemSocket {
        rx: tokio::sync::mpsc::UnboundedReceiver<Message>,
        tx: tokio::sync::mpsc::UnboundedSender<Message>,
    }

    impl Stream for MemSocket {
        type Item = Result<Message, std::convert::Infallible>;
        fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Self::Item>> {
            self.rx.poll_recv(cx).map(|m| m.map(Ok))
        }
    }

    impl Sink<Message> for MemSocket {
        type Error = ();
        fn poll_ready(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), ()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn start_send(self: std::pin::Pin<&mut Self>, m: Message) -> Result<(), ()> {
            self.tx.send(m).map_err(drop)
        }
        fn poll_flush(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), ()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_close(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), ()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// The test's end of a bridge: a client, the bridge's task, and the server's stop switch.
    struct Client {
        to_bridge: tokio::sync::mpsc::UnboundedSender<Message>,
        from_bridge: tokio::sync::mpsc::UnboundedReceiver<Message>,
        bridge: tokio::task::JoinHandle<End>,
        stop: tokio::sync::watch::Sender<bool>,
        _dir: tempfile::TempDir,
    }

    impl Client {
        /// A shell in a workstation of the fake backend (a real agent on this host), attached.
        async fn attach(read_only: bool) -> Client {
            use hearth_service::{testing, Need, Principal};
            let dir = tempfile::tempdir().unwrap();
            let (svc, _b) = testing::service(dir.path(), hearth_service::config::Config::default(), Need { mem_mib: 8192, vcpus: 64, disk_gib: 64 });
            let me = Principal::admin("admin");
            let w = svc.create(&me, hearth_proto::api::CreateWorkstation { name: "b".into(), ..Default::default() }).await.unwrap();
            let t = svc.open_terminal(&me, &w.id, hearth_proto::api::CreateTerminal { argv: vec!["sh".into()], ..Default::default() }).await.unwrap();
            let mode = if read_only { hearth_service::terminals::AttachMode::View } else { hearth_service::terminals::AttachMode::Write };
            let stream = svc.attach_terminal(&me, &w.id, &t.id, mode).await.unwrap();
            let (to_bridge, rx) = tokio::sync::mpsc::unbounded_channel();
            let (tx, from_bridge) = tokio::sync::mpsc::unbounded_channel();
            let stop = tokio::sync::watch::Sender::new(false);
            let bridge = tokio::spawn(pump(MemSocket { rx, tx }, stream, read_only, stop.subscribe()));
            Client { to_bridge, from_bridge, bridge, stop, _dir: dir }
        }

        fn send(&self, m: Message) {
            self.to_bridge.send(m).unwrap();
        }

        /// Messages until one satisfies `done` (output is gathered as text); all texts seen.
        async fn until(&mut self, done: impl Fn(&str, &Message) -> bool) -> (String, Vec<String>) {
            let (mut out, mut texts) = (String::new(), Vec::new());
            let wait = tokio::time::timeout(Duration::from_secs(20), async {
                while let Some(m) = self.from_bridge.recv().await {
                    match &m {
                        Message::Binary(b) => out.push_str(&String::from_utf8_lossy(b)),
                        Message::Text(t) => texts.push(t.to_string()),
                        _ => {}
                    }
                    if done(&out, &m) {
                        return;
                    }
                }
            });
            wait.await.unwrap_or_else(|_| panic!("timed out; output {out:?}, texts {texts:?}"));
            (out, texts)
        }
    }

    #[tokio::test]
    async fn keys_go_in_output_comes_out_and_resizes_reach_the_terminal() {
        let mut c = Client::attach(false).await;
        let (_, texts) = c.until(|_, m| matches!(m, Message::Text(t) if t.contains("attached"))).await;
        assert!(texts[0].contains("\"read_only\":false"), "{texts:?}");
        c.send(Message::Binary(b"echo he''llo\n".to_vec().into()));
        c.until(|out, _| out.contains("hello")).await;
        c.send(Message::Text(r#"{"type":"resize","rows":30,"cols":100}"#.into()));
        c.until(|_, m| matches!(m, Message::Text(t) if t.contains("resize"))).await;
        c.send(Message::Binary(b"stty size\n".to_vec().into()));
        c.until(|out, _| out.contains("30 100")).await;
        c.send(Message::Text(r#"{"type":"ping"}"#.into()));
        c.until(|_, m| matches!(m, Message::Text(t) if t.contains("pong"))).await;
        c.send(Message::Text("not json".into()));
        c.until(|_, m| matches!(m, Message::Text(t) if t.contains("bad control message"))).await;
        c.send(Message::Close(None));
        let end = c.bridge.await.unwrap();
        assert_eq!(end, End { why: "the client closed", asked: true });
    }

    #[tokio::test]
    async fn an_exit_ends_the_bridge_with_its_status() {
        let mut c = Client::attach(false).await;
        c.send(Message::Binary(b"exit 7\n".to_vec().into()));
        let (_, texts) = c.until(|_, m| matches!(m, Message::Close(_))).await;
        assert!(texts.iter().any(|t| t.contains("\"type\":\"exit\"") && t.contains("\"code\":7")), "{texts:?}");
        assert_eq!(c.bridge.await.unwrap().why, "the terminal's command ended");
    }

    #[tokio::test]
    async fn a_viewer_is_told_so_and_the_server_stopping_ends_it() {
        let mut c = Client::attach(true).await;
        let (_, texts) = c.until(|_, m| matches!(m, Message::Text(t) if t.contains("attached"))).await;
        assert!(texts[0].contains("\"read_only\":true"), "{texts:?}");
        // A viewer's resize is not applied: no resize comes back before the stop's close.
        c.send(Message::Text(r#"{"type":"resize","rows":31,"cols":101}"#.into()));
        c.send(Message::Text(r#"{"type":"ping"}"#.into()));
        let (_, texts) = c.until(|_, m| matches!(m, Message::Text(t) if t.contains("pong"))).await;
        assert!(!texts.iter().any(|t| t.contains("resize")), "{texts:?}");
        c.stop.send_replace(true);
        c.until(|_, m| matches!(m, Message::Close(_))).await;
        assert_eq!(c.bridge.await.unwrap(), End { why: "the server is stopping", asked: true });
    }
}
