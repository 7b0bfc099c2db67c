//! `hearth ws attach`: this terminal becomes the workstation's terminal. Raw mode while
//! attached, the window size followed (SIGWINCH), Ctrl-] detaches (the session goes on).
//!
//! One thread waits in `poll` on the socket, stdin and a self-pipe the SIGWINCH handler
//! writes to: a keystroke goes out the moment it is read, output is written the moment it
//! arrives, and an idle attach sleeps until something happens (no timed wake-ups).

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

use crate::cmd::client::Api;
use anyhow::{bail, Context};
use hearth_proto::api::{WsClientMessage, WsServerMessage};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::termios::{self, SetArg, Termios};
use tungstenite::Message;

/// The byte that detaches: Ctrl-] (as telnet).
pub(crate) const DETACH_KEY: u8 = 0x1d;

/// The write end of the window-change pipe, for the signal handler (-1: none).
static WINCH_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_winch(_: nix::libc::c_int) {
    let fd = WINCH_PIPE.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; the byte outlives the call. A full pipe
        // (EAGAIN) already holds a wake-up, which is all a byte says.
        unsafe { nix::libc::write(fd, [1u8].as_ptr().cast(), 1) };
    }
}

/// The window-change pipe while attached: the handler's end is forgotten before it closes.
struct WinchPipe {
    read: OwnedFd,
    _write: OwnedFd,
}

impl WinchPipe {
    fn install() -> anyhow::Result<WinchPipe> {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC).context("making the window-change pipe")?;
        WINCH_PIPE.store(write.as_raw_fd(), Ordering::SeqCst);
        let action = nix::sys::signal::SigAction::new(nix::sys::signal::SigHandler::Handler(on_winch), nix::sys::signal::SaFlags::SA_RESTART, nix::sys::signal::SigSet::empty());
        // SAFETY: the handler only loads an atomic and calls write(2).
        unsafe { nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGWINCH, &action) }.context("handling SIGWINCH")?;
        Ok(WinchPipe { read, _write: write })
    }

    /// Empties the pipe: one resize stands for however many signals came.
    fn drain(&self) {
        let mut buf = [0u8; 64];
        while matches!(nix::unistd::read(self.read.as_raw_fd(), &mut buf), Ok(n) if n > 0) {}
    }
}

impl Drop for WinchPipe {
    fn drop(&mut self) {
        WINCH_PIPE.store(-1, Ordering::SeqCst);
    }
}

/// Puts the terminal back as it was, however attach ends.
struct RawMode(Option<Termios>);

impl RawMode {
    fn enter() -> RawMode {
        let stdin = std::io::stdin();
        let Ok(saved) = termios::tcgetattr(stdin.as_fd()) else { return RawMode(None) };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        if termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).is_err() {
            return RawMode(None);
        }
        RawMode(Some(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, t);
        }
    }
}

fn window_size() -> Option<(u16, u16)> {
    let mut ws = nix::libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one winsize through the pointer, which outlives the call.
    let ok = unsafe { nix::libc::ioctl(1, nix::libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}

type Socket = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

fn control(m: &WsClientMessage) -> Message {
    Message::Text(serde_json::to_string(m).expect("messages serialize").into())
}

fn would_block(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Queues `m` and writes what the socket takes now. Whatever it does not take stays queued in
/// the socket's buffer and goes out when it is writable (see [`attach`]'s loop).
fn send(sock: &mut Socket, m: Message) -> anyhow::Result<()> {
    match sock.send(m) {
        Err(e) if !would_block(&e) => Err(e).context("sending to the server"),
        _ => Ok(()),
    }
}

/// Writes out what is queued; true when something is still waiting for the socket.
fn flush(sock: &mut Socket) -> anyhow::Result<bool> {
    match sock.flush() {
        Ok(()) => Ok(false),
        Err(e) if would_block(&e) => Ok(true),
        Err(e) => Err(e).context("sending to the server"),
    }
}

/// Detaches in good order: what was typed before the detach key goes out, then a close (the
/// server logs a detach, not a dropped client); a server that takes none of it within a few
/// seconds is left as it is.
fn leave(sock: &mut Socket) {
    if let tungstenite::stream::MaybeTlsStream::Plain(tcp) = sock.get_mut() {
        let _ = tcp.set_nonblocking(false).and_then(|()| tcp.set_write_timeout(Some(std::time::Duration::from_secs(5))));
    }
    let _ = sock.close(None);
    let _ = sock.flush();
}

/// What a message from the server means here: output to show, or the end of the attach.
fn show(msg: Message, out: &mut impl Write) -> anyhow::Result<Option<String>> {
    match msg {
        Message::Binary(b) => {
            out.write_all(&b)?;
            out.flush()?;
        }
        Message::Text(t) => match serde_json::from_str::<WsServerMessage>(&t) {
            Ok(WsServerMessage::Exit { code, signal }) => {
                let how = code.map(|c| format!("exit {c}")).or(signal.map(|s| format!("signal {s}"))).unwrap_or_default();
                return Ok(Some(format!("the session ended ({how})")));
            }
            Ok(WsServerMessage::Lagged) => return Ok(Some("dropped by the server: this terminal fell behind; attach again".into())),
            _ => {}
        },
        Message::Close(_) => return Ok(Some("the server closed the connection".into())),
        _ => {}
    }
    Ok(None)
}

/// Attaches to `url` until the session ends, the server drops us, or the detach key.
///
/// Keystrokes are read only while the socket takes what was sent before (a server that stops
/// reading holds the keyboard, never this process's memory); in view mode they are read for
/// the detach key alone.
pub(crate) fn attach(api: &Api, url: &str, read_only: bool) -> anyhow::Result<String> {
    use tungstenite::client::IntoClientRequest;
    let config = tungstenite::protocol::WebSocketConfig::default().read_buffer_size(hearth_proto::api::WS_READ_BUFFER);
    let mut req = url.into_client_request().with_context(|| url.to_string())?;
    if let Some(a) = api.authorization() {
        req.headers_mut().insert("authorization", a.parse().context("the token is not header-safe")?);
    }
    let (mut sock, _) = tungstenite::client::connect_with_config(req, Some(config), 3).map_err(|e| match e {
        tungstenite::Error::Http(resp) => {
            let body = resp.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default();
            let msg = serde_json::from_str::<serde_json::Value>(&body).ok().and_then(|v| v["error"]["message"].as_str().map(String::from)).unwrap_or(body.into_owned());
            anyhow::anyhow!("{url}: {msg} (HTTP {})", resp.status().as_u16())
        }
        e => anyhow::anyhow!("connecting to {url}: {e}"),
    })?;
    let head: WsServerMessage = match sock.read().context("reading the first message")? {
        Message::Text(t) => serde_json::from_str(&t).context("parsing the first message")?,
        other => bail!("expected `attached`, got {other:?}"),
    };
    let WsServerMessage::Attached { .. } = head else { bail!("expected `attached`, got {head:?}") };
    let tungstenite::stream::MaybeTlsStream::Plain(tcp) = sock.get_mut() else { bail!("{url}: only plain ws:// is supported") };
    tcp.set_nonblocking(true).context("making the socket non-blocking")?;
    // A second handle on the socket to wait on, so the WebSocket stays free to use.
    let waiter = tcp.try_clone().context("cloning the socket")?;
    let stdin = std::io::stdin();
    let interactive = std::io::IsTerminal::is_terminal(&stdin);
    let _raw = interactive.then(RawMode::enter);
    let winch = WinchPipe::install()?;
    if let (false, Some((rows, cols))) = (read_only, window_size().filter(|_| interactive)) {
        send(&mut sock, control(&WsClientMessage::Resize { rows, cols }))?;
    }
    let mut out = std::io::stdout();
    let mut keys = [0u8; 4096];
    let mut stdin_open = true;
    loop {
        // Every message already here first: one read of the socket may have brought several.
        loop {
            match sock.read() {
                Ok(msg) => {
                    if let Some(why) = show(msg, &mut out)? {
                        return Ok(why);
                    }
                }
                Err(e) if would_block(&e) => break,
                Err(e) => return Err(e).context("reading from the server"),
            }
        }
        // Pongs to the server's pings are queued by the reads above.
        let backlog = flush(&mut sock)?;
        let socket_flags = if backlog { PollFlags::POLLIN | PollFlags::POLLOUT } else { PollFlags::POLLIN };
        let mut fds = vec![PollFd::new(waiter.as_fd(), socket_flags), PollFd::new(winch.read.as_fd(), PollFlags::POLLIN)];
        if stdin_open && !backlog {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match nix::poll::poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => r.context("waiting for the socket and the keyboard")?,
        };
        let ready = |i: usize| fds.get(i).and_then(|f| f.revents()).is_some_and(|r| !r.is_empty());
        let (winched, typed) = (ready(1), ready(2));
        drop(fds);
        if winched {
            winch.drain();
            if let (false, Some((rows, cols))) = (read_only, window_size()) {
                send(&mut sock, control(&WsClientMessage::Resize { rows, cols }))?;
            }
        }
        if typed {
            let n = match nix::unistd::read(stdin.as_raw_fd(), &mut keys) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => continue,
                // A closed or broken stdin ends typing, not the attach: the session's output
                // is still shown until it ends.
                Err(_) => 0,
            };
            if n == 0 {
                stdin_open = false;
                continue;
            }
            let keys = &keys[..n];
            let detach_at = keys.iter().position(|&b| b == DETACH_KEY).filter(|_| interactive);
            let typed = &keys[..detach_at.unwrap_or(n)];
            if !read_only && !typed.is_empty() {
                send(&mut sock, Message::Binary(typed.to_vec().into()))?;
            }
            if detach_at.is_some() {
                leave(&mut sock);
                return Ok("detached".into());
            }
        }
    }
}
