//! One connection's life on the serving side: hello (and the token, where one is set), then
//! requests, answered with limits everywhere. Short requests are answered and the next one
//! read; a streaming request (exec, a file transfer, a pty attach) owns the connection to
//! its end, in its own module.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hearth_proto::control::{capability, validate_path, ErrorKind, Event, Request, DATA_CHUNK, PROTOCOL_VERSION, TAG_CONTROL, TAG_DATA};
use hearth_proto::frame::{read_frame, write_frame};

use crate::conn::Conn;
use crate::files::{self, WriteSpec};
use crate::pty::{self, Sessions};
use crate::refusal::{io_kind, Refusal};
use crate::reply::{refuse, send};

/// A client must say hello within this time.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection idle between requests longer than this is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

pub struct ServerConfig {
    /// When set, hello must carry it (the box: its port is reachable by every local user).
    /// Unset for the guest agent: only the host can open its vsock.
    pub token: Option<String>,
    /// Environment every command starts with (a request's env is added on top).
    pub env: Vec<(String, String)>,
    /// Called after a shutdown request was acknowledged.
    pub on_shutdown: Box<dyn Fn() + Send + Sync>,
    /// Milliseconds since boot, reported in hello and health.
    pub uptime_ms: fn() -> u64,
    pub capabilities: Vec<String>,
    /// Whether `set_time` and `add_entropy` are served (the guest agent: yes; the box keeps
    /// its own clock and randomness).
    pub allow_machine_settings: bool,
    /// The terminal sessions this server keeps.
    pub ptys: Sessions,
}

/// Bounds the connections served at once.
#[derive(Clone)]
pub struct ConnLimit {
    active: Arc<AtomicUsize>,
    max: usize,
}

/// One admitted connection; leaving frees its place.
pub struct ConnSlot(Arc<AtomicUsize>);

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ConnLimit {
    pub fn new(max: usize) -> Self {
        Self { active: Arc::new(AtomicUsize::new(0)), max }
    }

    pub fn try_acquire(&self) -> Option<ConnSlot> {
        if self.active.fetch_add(1, Ordering::SeqCst) >= self.max {
            self.active.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(ConnSlot(self.active.clone()))
    }
}

/// Serves every connection `incoming` yields, a thread each, at most `limit` at once.
pub fn serve_incoming<C: Conn>(incoming: impl Iterator<Item = io::Result<C>>, cfg: Arc<ServerConfig>, limit: ConnLimit) {
    for conn in incoming {
        let Ok(mut conn) = conn else { continue };
        let Some(slot) = limit.try_acquire() else {
            let _ = send(&mut conn, &Refusal::new(ErrorKind::Busy, "too many connections").event());
            continue;
        };
        let cfg = cfg.clone();
        std::thread::spawn(move || {
            let _ = serve_conn(conn, &cfg);
            drop(slot);
        });
    }
}

/// The next request; None when the client closed the connection (between requests).
fn recv<C: Conn>(conn: &mut C) -> Result<Option<Request>, Refusal> {
    match read_frame(conn) {
        Ok(Some(f)) if f.tag == TAG_CONTROL => serde_json::from_slice(&f.payload).map(Some).map_err(|e| Refusal::invalid(format!("bad request: {e}"))),
        Ok(Some(f)) => Err(Refusal::invalid(format!("expected a control frame, got tag {}", f.tag))),
        Ok(None) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Compares without an early exit, so timing does not leak how much of the token matched.
fn token_matches(given: &str, want: &str) -> bool {
    given.len() == want.len() && given.bytes().zip(want.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// Serves one connection to its end. Errors are what the client was told (as far as the
/// connection still took it).
pub fn serve_conn<C: Conn>(mut conn: C, cfg: &ServerConfig) -> Result<(), Refusal> {
    conn.set_read_timeout_conn(Some(HELLO_TIMEOUT))?;
    match recv(&mut conn) {
        Ok(Some(Request::Hello { version, .. })) if version != PROTOCOL_VERSION => {
            return refuse(&mut conn, Refusal::invalid(format!("protocol version {version} not supported; this server speaks {PROTOCOL_VERSION}")))
        }
        Ok(Some(Request::Hello { token, .. })) => {
            if let Some(want) = &cfg.token {
                if !token.as_deref().is_some_and(|t| token_matches(t, want)) {
                    return refuse(&mut conn, Refusal::new(ErrorKind::Denied, "wrong token"));
                }
            }
        }
        Ok(Some(_)) => return refuse(&mut conn, Refusal::invalid("say hello first")),
        Ok(None) => return refuse(&mut conn, Refusal::new(ErrorKind::Closed, "connection closed")),
        Err(e) => return refuse(&mut conn, e),
    }
    let hello = Event::Hello { version: PROTOCOL_VERSION, uptime_ms: (cfg.uptime_ms)(), capabilities: capabilities(cfg) };
    send(&mut conn, &hello)?;
    loop {
        conn.set_read_timeout_conn(Some(IDLE_TIMEOUT))?;
        let req = match recv(&mut conn) {
            Ok(Some(r)) => r,
            // The client is done with this connection.
            Ok(None) => return Ok(()),
            Err(e) => return refuse(&mut conn, e),
        };
        if let Some(path) = request_path(&req) {
            if let Err(e) = validate_path(path) {
                return refuse(&mut conn, Refusal::invalid(e));
            }
        }
        let answer = match req {
            // Streaming requests: the connection is theirs from here.
            Request::Exec(spec) => {
                if let Err(e) = spec.validate() {
                    return refuse(&mut conn, Refusal::invalid(e));
                }
                conn.set_read_timeout_conn(None)?;
                return crate::exec::exec(conn, &cfg.env, &spec);
            }
            Request::ReadFile { path, max_bytes } => return files::read_file(conn, &path, max_bytes),
            Request::WriteFile { path, size, mode, user, create_dirs } => {
                return files::write_file(conn, WriteSpec { path: &path, size, mode, user: user.as_deref(), create_dirs })
            }
            // Short, but its answer carries bytes in data frames after the event.
            Request::PtyRead { id, after, max_bytes, wait_ms } => {
                match cfg.ptys.read(&id, after, max_bytes, wait_ms) {
                    Ok((event, bytes)) => {
                        send(&mut conn, &event)?;
                        for chunk in bytes.chunks(DATA_CHUNK) {
                            write_frame(&mut conn, TAG_DATA, chunk).map_err(Refusal::from)?;
                        }
                    }
                    Err(r) => send(&mut conn, &r.event())?,
                }
                continue;
            }
            Request::PtyAttach { id, scrollback_lines, read_only } => {
                conn.set_read_timeout_conn(None)?;
                return cfg.ptys.attach(conn, &id, scrollback_lines, read_only);
            }
            Request::Shutdown => {
                let _ = send(&mut conn, &Event::ShuttingDown);
                conn.shutdown_conn();
                drop(conn);
                (cfg.on_shutdown)();
                return Ok(());
            }
            // Short requests: one answer each, then the next request.
            Request::Health => Event::Health { uptime_ms: (cfg.uptime_ms)(), mem_available_kib: mem_available_kib(), load1: load1() },
            Request::SetTime { unix_ms } if cfg.allow_machine_settings => set_wall_clock(unix_ms).map_or_else(|r| r.event(), |()| Event::TimeSet),
            Request::SetTime { .. } => Refusal::new(ErrorKind::Denied, "this server does not set its clock").event(),
            Request::AddEntropy { seed } if cfg.allow_machine_settings => add_entropy(&seed).map_or_else(|r| r.event(), |()| Event::Ok),
            Request::AddEntropy { .. } => Refusal::new(ErrorKind::Denied, "this server does not take entropy").event(),
            Request::ListDir { path } => files::list_dir(&path).unwrap_or_else(|r| r.event()),
            req @ (Request::PtyOpen(_)
            | Request::PtyList
            | Request::PtyResize { .. }
            | Request::PtySignal { .. }
            | Request::PtyClose { .. }
            | Request::PtyWrite { .. }
            | Request::PtyScreen { .. }) => pty::handle(&cfg.ptys, &cfg.env, req),
            Request::Hello { .. } => return refuse(&mut conn, Refusal::invalid("hello was already said")),
        };
        send(&mut conn, &answer)?;
    }
}

/// What hello announces: the configured capabilities, plus those of this crate's server
/// itself whatever the configuration (every error it sends has a kind).
fn capabilities(cfg: &ServerConfig) -> Vec<String> {
    let mut caps = cfg.capabilities.clone();
    if !caps.iter().any(|c| c == capability::ERROR_KINDS) {
        caps.push(capability::ERROR_KINDS.into());
    }
    caps
}

/// The path a file request names.
fn request_path(req: &Request) -> Option<&str> {
    match req {
        Request::ReadFile { path, .. } | Request::WriteFile { path, .. } | Request::ListDir { path } => Some(path),
        _ => None,
    }
}

/// Mixes `seed` into the kernel's pool (writing /dev/urandom mixes without crediting; the
/// guest's virtio-rng and trusted CPU randomness are what credit it).
fn add_entropy(seed: &[u8]) -> Result<(), Refusal> {
    if seed.len() > hearth_proto::control::MAX_ENTROPY_SEED {
        return Err(Refusal::new(ErrorKind::TooLarge, format!("seed of {} bytes, at most {} allowed", seed.len(), hearth_proto::control::MAX_ENTROPY_SEED)));
    }
    std::fs::OpenOptions::new().write(true).open("/dev/urandom").and_then(|mut f| std::io::Write::write_all(&mut f, seed)).map_err(|e| Refusal::io("writing /dev/urandom", &e))
}

fn set_wall_clock(unix_ms: u64) -> Result<(), Refusal> {
    let ts = nix::sys::time::TimeSpec::new((unix_ms / 1000) as i64, ((unix_ms % 1000) * 1_000_000) as i64);
    nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, ts).map_err(|e| Refusal::new(io_kind(&std::io::Error::from(e)), format!("setting the clock: {e}")))
}

fn mem_available_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find(|l| l.starts_with("MemAvailable:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg").ok().and_then(|l| l.split_whitespace().next()?.parse().ok()).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{ExecClient, ExecError};
    use hearth_proto::control::ExecSpec;
    use hearth_proto::frame::read_frame;
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::path::PathBuf;
    use std::sync::atomic::AtomicU32;

    struct Server {
        _dir: tempfile::TempDir,
        path: PathBuf,
        shutdowns: Arc<AtomicU32>,
    }

    fn server(token: Option<&str>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let shutdowns = Arc::new(AtomicU32::new(0));
        let s = shutdowns.clone();
        let cfg = Arc::new(ServerConfig {
            token: token.map(str::to_string),
            env: vec![("PATH".into(), "/usr/bin:/bin".into()), ("HEARTH_TEST_ENV".into(), "base".into())],
            on_shutdown: Box::new(move || {
                s.fetch_add(1, Ordering::SeqCst);
            }),
            uptime_ms: || 42,
            capabilities: vec!["exec".into()],
            allow_machine_settings: false,
            ptys: Default::default(),
        });
        std::thread::spawn(move || serve_incoming(listener.incoming(), cfg, ConnLimit::new(8)));
        Server { _dir: dir, path, shutdowns }
    }

    impl Server {
        fn client(&self, token: Option<&str>) -> Result<ExecClient<UnixStream>, ExecError> {
            ExecClient::hello(UnixStream::connect(&self.path).unwrap(), token, Duration::from_secs(5))
        }

        fn exec(&self, spec: ExecSpec) -> (Result<crate::ExecExit, ExecError>, String, String) {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let r = self.client(None).unwrap().exec(spec, &mut out, &mut err);
            (r, String::from_utf8_lossy(&out).into_owned(), String::from_utf8_lossy(&err).into_owned())
        }
    }

    #[test]
    fn runs_commands_and_streams_both_outputs() {
        let s = server(None);
        let c = s.client(None).unwrap();
        assert_eq!((c.uptime_ms, c.capabilities.clone()), (42, vec!["exec".to_string(), "error-kinds".to_string()]));
        let (r, out, err) = s.exec(ExecSpec::new(["sh", "-c", "echo out $HEARTH_TEST_ENV; echo err >&2; exit 7"]));
        assert_eq!(r.unwrap().status(), 7);
        assert_eq!((out.as_str(), err.as_str()), ("out base\n", "err\n"));
    }

    #[test]
    fn request_env_and_cwd_apply() {
        let s = server(None);
        let spec = ExecSpec { env: vec![("X".into(), "y".into())], cwd: Some("/tmp".into()), ..ExecSpec::new(["sh", "-c", "echo $X; pwd"]) };
        let (r, out, _) = s.exec(spec);
        assert_eq!((r.unwrap().status(), out.as_str()), (0, "y\n/tmp\n"));
    }

    #[test]
    fn timeouts_kill_the_command() {
        let s = server(None);
        let (r, _, _) = s.exec(ExecSpec { timeout_secs: Some(1), ..ExecSpec::new(["sleep", "30"]) });
        let exit = r.unwrap();
        assert!(exit.timed_out);
        assert_eq!(exit.signal, Some(9));
    }

    #[test]
    fn output_beyond_the_limit_is_cut_and_the_command_killed() {
        let s = server(None);
        let (r, out, _) = s.exec(ExecSpec { max_output_bytes: Some(1000), ..ExecSpec::new(["yes"]) });
        let exit = r.unwrap();
        assert!(exit.truncated, "{exit:?}");
        assert_eq!(out.len(), 1000);
    }

    #[test]
    fn commands_run_as_the_named_user() {
        let s = server(None);
        if !nix::unistd::geteuid().is_root() {
            // Switching users needs root; as another user the server must refuse clearly.
            let (r, _, _) = s.exec(ExecSpec { user: Some("nobody".into()), ..ExecSpec::new(["id", "-u"]) });
            assert!(r.is_err());
            return;
        }
        let (r, out, _) = s.exec(ExecSpec { user: Some("nobody".into()), ..ExecSpec::new(["sh", "-c", "id -u; echo $USER"]) });
        assert_eq!(r.unwrap().status(), 0);
        let nobody = crate::user::lookup("nobody").unwrap();
        assert_eq!(out, format!("{}\nnobody\n", nobody.uid));
        let (r, _, _) = s.exec(ExecSpec { user: Some("hearth-no-such-user".into()), ..ExecSpec::new(["true"]) });
        assert!(matches!(r, Err(ExecError::Refused { kind: ErrorKind::Invalid, message: m }) if m.contains("no such user")));
    }

    #[test]
    fn missing_binary_is_an_error_and_the_server_keeps_serving() {
        let s = server(None);
        let (r, _, _) = s.exec(ExecSpec::new(["/no/such/binary"]));
        assert!(matches!(r, Err(ExecError::Refused { kind: ErrorKind::Failed, message: m }) if m.contains("cannot run /no/such/binary")));
        assert_eq!(s.exec(ExecSpec::new(["true"])).0.unwrap().status(), 0);
    }

    #[test]
    fn tokens_garbage_and_bad_requests_are_refused() {
        let s = server(Some("sekrit"));
        assert!(matches!(s.client(Some("nope")), Err(ExecError::Refused { kind: ErrorKind::Denied, message: m }) if m == "wrong token"));
        assert!(matches!(s.client(None), Err(ExecError::Refused { kind: ErrorKind::Denied, message: m }) if m == "wrong token"));
        assert!(s.client(Some("sekrit")).is_ok());
        // An oversized frame header, an unknown message, a truncated stream.
        for (bytes, want) in [
            (&[0xffu8, 0xff, 0xff, 0xff, 1][..], ErrorKind::TooLarge),
            // An unknown message: 15 bytes, its tag and the JSON.
            (b"\x00\x00\x00\x0f\x01{\"type\":\"zap\"}", ErrorKind::Invalid),
            (b"\x00\x00\x00\x09\x01{\"ty", ErrorKind::Closed),
        ] {
            let mut raw = UnixStream::connect(&s.path).unwrap();
            std::io::Write::write_all(&mut raw, bytes).unwrap();
            raw.shutdown(std::net::Shutdown::Write).unwrap();
            let reply = read_frame(&mut raw).unwrap().unwrap();
            assert!(String::from_utf8_lossy(&reply.payload).contains("\"type\":\"error\""), "{bytes:?}");
            assert!(matches!(serde_json::from_slice(&reply.payload), Ok(Event::Error { kind, .. }) if kind == want), "{bytes:?}: {reply:?}");
        }
        let ok = ExecClient::hello(UnixStream::connect(&s.path).unwrap(), Some("sekrit"), Duration::from_secs(5)).unwrap();
        assert_eq!(ok.exec_collect(ExecSpec::new(["true"])).unwrap().0.status(), 0);
    }

    #[test]
    fn set_time_is_refused_where_not_allowed() {
        let s = server(None);
        let mut c = s.client(None).unwrap();
        assert!(matches!(c.set_time(1), Err(ExecError::Refused { kind: ErrorKind::Denied, message: m }) if m.contains("does not set its clock")));
        assert!(matches!(c.add_entropy(b"seed"), Err(ExecError::Refused { kind: ErrorKind::Denied, message: m }) if m.contains("does not take entropy")));
    }

    #[test]
    fn health_reports_the_machine() {
        let s = server(None);
        match s.client(None).unwrap().health().unwrap() {
            Event::Health { uptime_ms, mem_available_kib, .. } => assert!(uptime_ms == 42 && mem_available_kib > 0),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn shutdown_is_acknowledged_then_performed() {
        let s = server(None);
        s.client(None).unwrap().shutdown().unwrap();
        for _ in 0..100 {
            if s.shutdowns.load(Ordering::SeqCst) == 1 {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("shutdown callback not called");
    }
}
