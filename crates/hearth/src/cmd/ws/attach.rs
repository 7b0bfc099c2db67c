//! `hearth ws attach`: this terminal becomes the workstation's terminal. Raw mode while
//! attached, the window size followed (SIGWINCH), Ctrl-] detaches (the session goes on).

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use hearth_proto::api::{WsClientMessage, WsServerMessage};
use nix::sys::termios::{self, SetArg, Termios};
use tungstenite::Message;

/// The byte that detaches: Ctrl-] (as telnet).
pub(crate) const DETACH_KEY: u8 = 0x1d;

static WINCH: AtomicBool = AtomicBool::new(false);

extern "C" fn on_winch(_: nix::libc::c_int) {
    WINCH.store(true, Ordering::SeqCst);
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

fn send(sock: &Mutex<Socket>, m: Message) -> bool {
    sock.lock().unwrap_or_else(std::sync::PoisonError::into_inner).send(m).is_ok()
}

fn control(m: &WsClientMessage) -> Message {
    Message::Text(serde_json::to_string(m).expect("messages serialize").into())
}

/// Attaches to `url` until the session ends, the server drops us, or the detach key.
pub(crate) fn attach(url: &str, read_only: bool) -> anyhow::Result<String> {
    let config = tungstenite::protocol::WebSocketConfig::default().read_buffer_size(hearth_proto::api::WS_READ_BUFFER);
    let (mut sock, _) = tungstenite::client::connect_with_config(url, Some(config), 3).with_context(|| format!("connecting to {url}"))?;
    let head: WsServerMessage = match sock.read().context("reading the first message")? {
        Message::Text(t) => serde_json::from_str(&t).context("parsing the first message")?,
        other => bail!("expected `attached`, got {other:?}"),
    };
    let WsServerMessage::Attached { .. } = head else { bail!("expected `attached`, got {head:?}") };
    // Reads wake up every few ms so window changes and keystrokes get their turn on the one
    // socket (a keystroke waits at most that long).
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = sock.get_mut() {
        s.set_read_timeout(Some(std::time::Duration::from_millis(5))).context("setting a read timeout")?;
    }
    let sock = Arc::new(Mutex::new(sock));
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let _raw = interactive.then(RawMode::enter);
    let action = nix::sys::signal::SigAction::new(nix::sys::signal::SigHandler::Handler(on_winch), nix::sys::signal::SaFlags::SA_RESTART, nix::sys::signal::SigSet::empty());
    // SAFETY: the handler only stores to an atomic.
    let _ = unsafe { nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGWINCH, &action) };
    if let (false, Some((rows, cols))) = (read_only, window_size().filter(|_| interactive)) {
        send(&sock, control(&WsClientMessage::Resize { rows, cols }));
    }
    let done = Arc::new(AtomicBool::new(false));
    if !read_only {
        let (sock, done) = (sock.clone(), done.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut stdin = std::io::stdin();
            loop {
                let n = match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let keys = &buf[..n];
                if let Some(at) = keys.iter().position(|&b| b == DETACH_KEY).filter(|_| interactive) {
                    if at > 0 {
                        send(&sock, Message::Binary(keys[..at].to_vec().into()));
                    }
                    done.store(true, Ordering::SeqCst);
                    return;
                }
                if !send(&sock, Message::Binary(keys.to_vec().into())) {
                    return;
                }
            }
        });
    }
    let mut out = std::io::stdout();
    loop {
        if done.load(Ordering::SeqCst) {
            return Ok("detached".into());
        }
        if WINCH.swap(false, Ordering::SeqCst) && !read_only {
            if let Some((rows, cols)) = window_size() {
                send(&sock, control(&WsClientMessage::Resize { rows, cols }));
            }
        }
        let msg = sock.lock().unwrap_or_else(std::sync::PoisonError::into_inner).read();
        match msg {
            Ok(Message::Binary(b)) => {
                out.write_all(&b)?;
                out.flush()?;
            }
            Ok(Message::Text(t)) => match serde_json::from_str::<WsServerMessage>(&t) {
                Ok(WsServerMessage::Exit { code, signal }) => {
                    return Ok(format!("the session ended ({})", code.map(|c| format!("exit {c}")).or(signal.map(|s| format!("signal {s}"))).unwrap_or_default()))
                }
                Ok(WsServerMessage::Lagged) => return Ok("dropped by the server: this terminal fell behind; attach again".into()),
                _ => {}
            },
            Ok(Message::Close(_)) => return Ok("the server closed the connection".into()),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => return Err(e).context("reading from the server"),
        }
    }
}
