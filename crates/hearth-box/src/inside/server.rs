//! The box's control server: authenticated requests to run commands or power off.
//!
//! One thread per connection, a bounded number of connections. A command's output is
//! streamed back as frames; a client that goes away takes its command with it (the whole
//! process group is killed), so nothing keeps running for nobody.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use hearth_proto::boxctl::{BoxEvent, BoxRequest, BOX_PROTOCOL_VERSION, TAG_CONTROL, TAG_STDERR, TAG_STDOUT};
use hearth_proto::frame::{read_frame, write_frame};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// Connections served at once; more are refused.
const MAX_CONNECTIONS: usize = 64;
/// A client must say hello within this time.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

pub struct ServerConfig {
    pub token: String,
    /// Environment every command starts with (a request's env is added on top).
    pub env: Vec<(String, String)>,
    /// Called after a shutdown request was acknowledged.
    pub on_shutdown: Box<dyn Fn() + Send + Sync>,
    /// Milliseconds since boot, reported in hello.
    pub uptime_ms: fn() -> u64,
}

/// Serves until the listener fails.
pub fn serve(listener: TcpListener, cfg: Arc<ServerConfig>) -> std::io::Result<()> {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let Ok(stream) = conn else { continue };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            let mut s = stream;
            let _ = send(&mut s, &BoxEvent::Error { message: "too many connections".into() });
            continue;
        }
        let (cfg, active) = (cfg.clone(), active.clone());
        std::thread::spawn(move || {
            let _ = handle(stream, &cfg);
            active.fetch_sub(1, Ordering::SeqCst);
        });
    }
    Ok(())
}

fn send(stream: &mut TcpStream, ev: &BoxEvent) -> Result<(), hearth_proto::FrameError> {
    write_frame(stream, TAG_CONTROL, &serde_json::to_vec(ev).expect("events serialize"))
}

fn recv(stream: &mut TcpStream) -> Result<BoxRequest, String> {
    match read_frame(stream) {
        Ok(Some(f)) if f.tag == TAG_CONTROL => serde_json::from_slice(&f.payload).map_err(|e| format!("bad request: {e}")),
        Ok(Some(f)) => Err(format!("expected a control frame, got tag {}", f.tag)),
        Ok(None) => Err("connection closed".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Compares without an early exit, so timing does not leak how much of the token matched.
fn token_matches(given: &str, want: &str) -> bool {
    given.len() == want.len() && given.bytes().zip(want.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

fn handle(mut stream: TcpStream, cfg: &ServerConfig) -> Result<(), String> {
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(HELLO_TIMEOUT)).map_err(|e| e.to_string())?;
    let refuse = |s: &mut TcpStream, message: String| {
        let _ = send(s, &BoxEvent::Error { message: message.clone() });
        Err(message)
    };
    match recv(&mut stream) {
        Ok(BoxRequest::Hello { version, token }) if version == BOX_PROTOCOL_VERSION && token_matches(&token, &cfg.token) => {}
        Ok(BoxRequest::Hello { version, .. }) if version != BOX_PROTOCOL_VERSION => {
            return refuse(&mut stream, format!("protocol version {version} not supported; this box speaks {BOX_PROTOCOL_VERSION}"))
        }
        Ok(BoxRequest::Hello { .. }) => return refuse(&mut stream, "wrong token".into()),
        Ok(_) => return refuse(&mut stream, "say hello first".into()),
        Err(e) => return refuse(&mut stream, e),
    }
    send(&mut stream, &BoxEvent::Hello { version: BOX_PROTOCOL_VERSION, uptime_ms: (cfg.uptime_ms)() }).map_err(|e| e.to_string())?;
    let request = match recv(&mut stream) {
        Ok(r) => r,
        Err(e) => return refuse(&mut stream, e),
    };
    if let Err(e) = request.validate() {
        return refuse(&mut stream, e);
    }
    match request {
        BoxRequest::Run { argv, env, cwd, timeout_secs } => {
            stream.set_read_timeout(None).map_err(|e| e.to_string())?;
            run(stream, cfg, &argv, &env, cwd.as_deref(), timeout_secs.map(Duration::from_secs))
        }
        BoxRequest::Shutdown => {
            let _ = send(&mut stream, &BoxEvent::ShuttingDown);
            drop(stream);
            (cfg.on_shutdown)();
            Ok(())
        }
        BoxRequest::Hello { .. } => refuse(&mut stream, "hello was already said".into()),
    }
}

fn run(
    mut stream: TcpStream,
    cfg: &ServerConfig,
    argv: &[String],
    env: &[(String, String)],
    cwd: Option<&str>,
    timeout: Option<Duration>,
) -> Result<(), String> {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .envs(cfg.env.iter().cloned())
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let message = format!("cannot run {}: {e}", argv[0]);
            let _ = send(&mut stream, &BoxEvent::Error { message: message.clone() });
            return Err(message);
        }
    };
    let pgid = Pid::from_raw(child.id() as i32);
    let writer = Arc::new(Mutex::new(stream.try_clone().map_err(|e| e.to_string())?));
    send(&mut writer.lock().expect("no panics while held"), &BoxEvent::Started { pid: child.id() }).map_err(|e| e.to_string())?;
    let gone = Arc::new(AtomicBool::new(false));
    let pumps: Vec<_> = [(child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>), TAG_STDOUT),
        (child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>), TAG_STDERR)]
    .into_iter()
    .filter_map(|(r, tag)| r.map(|r| (r, tag)))
    .map(|(mut r, tag)| {
        let (writer, gone) = (writer.clone(), gone.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match r.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if write_frame(&mut *writer.lock().expect("no panics while held"), tag, &buf[..n]).is_err() {
                            gone.store(true, Ordering::SeqCst);
                            return;
                        }
                    }
                }
            }
        })
    })
    .collect();
    // The client sends nothing after Run: a read returning means it went away.
    {
        let (mut watch, gone) = (stream.try_clone().map_err(|e| e.to_string())?, gone.clone());
        std::thread::spawn(move || {
            let _ = watch.read(&mut [0u8; 1]);
            gone.store(true, Ordering::SeqCst);
        });
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut timed_out = false;
    let status = loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(status) => break status.map_err(|e| e.to_string())?,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let expired = deadline.is_some_and(|d| Instant::now() > d);
                if expired || gone.load(Ordering::SeqCst) {
                    timed_out |= expired;
                    let _ = killpg(pgid, Signal::SIGKILL);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err("lost the command's wait thread".into()),
        }
    };
    // Daemons the command left in its group would hold the pipes open forever.
    let _ = killpg(pgid, Signal::SIGKILL);
    for p in pumps {
        let _ = p.join();
    }
    let exited = BoxEvent::Exited { code: status.code(), signal: status.signal(), timed_out };
    let result = send(&mut writer.lock().expect("no panics while held"), &exited).map_err(|e| e.to_string());
    let _ = stream.shutdown(std::net::Shutdown::Both);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::BoxClient;
    use crate::BoxError;
    use std::sync::atomic::AtomicU32;

    fn server() -> (u16, Arc<AtomicU32>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shutdowns = Arc::new(AtomicU32::new(0));
        let s = shutdowns.clone();
        let cfg = Arc::new(ServerConfig {
            token: "sekrit".into(),
            env: vec![("HEARTH_TEST_ENV".into(), "base".into())],
            on_shutdown: Box::new(move || {
                s.fetch_add(1, Ordering::SeqCst);
            }),
            uptime_ms: || 42,
        });
        std::thread::spawn(move || serve(listener, cfg));
        (port, shutdowns)
    }

    fn connect(port: u16) -> BoxClient {
        BoxClient::connect(port, "sekrit", Duration::from_secs(5)).unwrap()
    }

    fn run(port: u16, argv: &[&str], timeout_secs: Option<u64>) -> (Result<crate::client::RunExit, BoxError>, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let req = BoxRequest::Run { argv: argv.iter().map(|s| s.to_string()).collect(), env: vec![], cwd: None, timeout_secs };
        let r = connect(port).run(req, &mut out, &mut err);
        (r, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
    }

    #[test]
    fn runs_commands_and_streams_both_outputs() {
        let (port, _) = server();
        assert_eq!(connect(port).uptime_ms, 42);
        let (r, out, err) = run(port, &["sh", "-c", "echo out $HEARTH_TEST_ENV; echo err >&2; exit 7"], None);
        assert_eq!(r.unwrap().status(), 7);
        assert_eq!((out.as_str(), err.as_str()), ("out base\n", "err\n"));
    }

    #[test]
    fn timeouts_kill_the_command() {
        let (port, _) = server();
        let (r, _, _) = run(port, &["sleep", "30"], Some(1));
        let exit = r.unwrap();
        assert!(exit.timed_out);
        assert_eq!(exit.signal, Some(9));
    }

    #[test]
    fn missing_binary_is_an_error_and_the_server_keeps_serving() {
        let (port, _) = server();
        let (r, _, _) = run(port, &["/no/such/binary"], None);
        assert!(matches!(r, Err(BoxError::Refused(m)) if m.contains("cannot run /no/such/binary")));
        assert_eq!(run(port, &["true"], None).0.unwrap().status(), 0);
    }

    #[test]
    fn wrong_token_and_garbage_are_refused() {
        let (port, _) = server();
        assert!(matches!(BoxClient::connect(port, "nope", Duration::from_secs(5)), Err(BoxError::Refused(m)) if m == "wrong token"));
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        std::io::Write::write_all(&mut s, &[0xff, 0xff, 0xff, 0xff, 1]).unwrap();
        let reply = read_frame(&mut s).unwrap().unwrap();
        assert!(String::from_utf8_lossy(&reply.payload).contains("exceeds the limit"));
        assert_eq!(run(port, &["true"], None).0.unwrap().status(), 0);
    }

    #[test]
    fn shutdown_is_acknowledged_then_performed() {
        let (port, shutdowns) = server();
        connect(port).shutdown().unwrap();
        for _ in 0..100 {
            if shutdowns.load(Ordering::SeqCst) == 1 {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("shutdown callback not called");
    }
}
