//! The control protocol: how a host asks the box or a workstation's agent to do things.
//!
//! Over any byte stream (TCP into the box, vsock into a guest, a unix socket in tests), in
//! [frames](crate::frame). The client's first frame is [`Request::Hello`] (with the token
//! where the server requires one); the server answers [`Event::Hello`] with its version and
//! capabilities. Then requests: short ones (health, set_time, list_dir, the pty_* requests
//! other than attach) are answered with one event each and the connection takes the next;
//! streaming ones (exec, read_file, write_file, pty_attach) own the connection to its end.
//! Control messages are JSON in `TAG_CONTROL` frames; bytes travel in their own tags.
//! Documented in docs/protocol.md.

use serde::{Deserialize, Serialize};

/// Version of this protocol; a server refuses a client of another version.
pub const PROTOCOL_VERSION: u32 = 1;

/// The guest agent's vsock port for control connections.
pub const AGENT_VSOCK_PORT: u32 = 1024;

/// Frame tags.
pub const TAG_CONTROL: u8 = 1;
pub const TAG_STDOUT: u8 = 2;
pub const TAG_STDERR: u8 = 3;
/// Client → server: a command's stdin (`exec` with `stdin: true`); an empty frame is EOF.
pub const TAG_STDIN: u8 = 4;
/// File contents, either way (`read_file`, `write_file`).
pub const TAG_DATA: u8 = 5;
/// Terminal bytes: server → client the PTY's output, client → server keystrokes.
pub const TAG_PTY: u8 = 6;
/// On attach: the session's scrollback (formatted lines joined by CRLF), then its screen.
pub const TAG_SCROLLBACK: u8 = 7;
pub const TAG_SCREEN: u8 = 8;

/// Limits on what a client may ask for.
pub const MAX_ARGS: usize = 1024;
pub const MAX_ENV: usize = 256;
/// Output an exec may produce (stdout + stderr) before it is killed, when the client sets
/// no lower limit.
pub const MAX_OUTPUT_BYTES: u64 = 64 << 20;
/// Largest entropy seed a client may send.
pub const MAX_ENTROPY_SEED: usize = 512;
/// Longest path a request may name.
pub const MAX_PATH_LEN: usize = 4096;
/// Largest file `read_file` sends or `write_file` takes.
pub const MAX_FILE_BYTES: u64 = 4 << 30;
/// Entries `list_dir` returns at most (the rest: `truncated`).
pub const MAX_DIR_ENTRIES: usize = 10_000;
/// Bytes in one data frame (file contents, stdin, terminal output).
pub const DATA_CHUNK: usize = 64 << 10;
/// PTY sessions one server keeps at once (exited ones count until closed).
pub const MAX_PTYS: usize = 64;
/// Terminal size bounds.
pub const MAX_ROWS: u16 = 500;
pub const MAX_COLS: u16 = 1000;
/// Scrollback lines a session keeps: default and cap.
pub const DEFAULT_SCROLLBACK_LINES: usize = 1000;
pub const MAX_SCROLLBACK_LINES: usize = 10_000;
/// Longest PTY session id; ids are `[A-Za-z0-9_.-]`.
pub const MAX_PTY_ID_LEN: usize = 64;
/// Largest `pty_write`: keystrokes or a pasted command, not a file (the files API is for those).
pub const MAX_PTY_WRITE: usize = 64 << 10;
/// Output a session keeps for `pty_read`, bytes: the newest this many are readable by offset.
pub const PTY_LOG_BYTES: usize = 1 << 20;
/// Bytes one `pty_read` returns: default and cap.
pub const DEFAULT_PTY_READ: u32 = 64 << 10;
pub const MAX_PTY_READ: u32 = PTY_LOG_BYTES as u32;
/// Longest a `pty_read` waits for output, milliseconds.
pub const MAX_PTY_WAIT_MS: u32 = 20_000;

/// Capabilities a server may announce in its hello.
pub mod capability {
    pub const EXEC: &str = "exec";
    pub const EXEC_AS_USER: &str = "exec-as-user";
    pub const HEALTH: &str = "health";
    pub const SHUTDOWN: &str = "shutdown";
    pub const SET_TIME: &str = "set-time";
    pub const ADD_ENTROPY: &str = "add-entropy";
    pub const EXEC_STDIN: &str = "exec-stdin";
    pub const FILES: &str = "files";
    pub const PTY: &str = "pty";
    /// Its `error` events carry a [`ErrorKind`](super::ErrorKind) (older servers send none).
    pub const ERROR_KINDS: &str = "error-kinds";
}

/// What kind of failure an `error` event reports: what a caller may act on without reading
/// the message (which is for people and may change).
///
/// Versioning: the kind was added within protocol version 1. An older server sends no
/// `kind` (it reads as [`ErrorKind::Unknown`]); a newer one may send a kind this side does not
/// know (it reads as [`ErrorKind::Unknown`] too). So adding a kind never breaks a peer, and a
/// caller must treat `unknown` as "some failure" and never need a kind to be present.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// What the request names does not exist (a file, a pty session).
    NotFound,
    /// What the request would create exists already (a pty session id).
    Exists,
    /// Not allowed: a wrong token, no permission, a request this server does not serve.
    Denied,
    /// The request itself is wrong: bad argv, size, path, id, user, or a malformed message.
    Invalid,
    /// Over a size limit (a file, a frame, a seed).
    TooLarge,
    /// A limit on concurrent things is reached (connections, pty sessions): try later.
    Busy,
    /// The connection or stream ended before the request could complete.
    Closed,
    /// The operation was tried and failed (the command cannot be run, an I/O error).
    Failed,
    /// Sent by a peer without kinds, or a kind this side does not know.
    #[default]
    #[serde(other)]
    Unknown,
}

impl ErrorKind {
    /// The kind as it is on the wire (`not_found`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::Exists => "exists",
            ErrorKind::Denied => "denied",
            ErrorKind::Invalid => "invalid",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Busy => "busy",
            ErrorKind::Closed => "closed",
            ErrorKind::Failed => "failed",
            ErrorKind::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecSpec {
    pub argv: Vec<String>,
    #[serde(default)]
    pub env: Vec<(String, String)>,
    #[serde(default)]
    pub cwd: Option<String>,
    /// Run as this user (name from the server's /etc/passwd); default: the server's user.
    #[serde(default)]
    pub user: Option<String>,
    /// Kill the command after this many seconds (none: no limit).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// Kill the command once it wrote more than this (capped at [`MAX_OUTPUT_BYTES`]).
    #[serde(default)]
    pub max_output_bytes: Option<u64>,
    /// The client sends stdin as `TAG_STDIN` frames (an empty one ends it); otherwise
    /// stdin is /dev/null.
    #[serde(default)]
    pub stdin: bool,
}

/// A terminal session to open: a command on a new PTY.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtySpec {
    /// The session's id; the server makes one up when none is given.
    #[serde(default)]
    pub id: Option<String>,
    /// The command; empty: the user's login shell.
    #[serde(default)]
    pub argv: Vec<String>,
    #[serde(default)]
    pub env: Vec<(String, String)>,
    #[serde(default)]
    pub cwd: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    pub rows: u16,
    pub cols: u16,
    /// Lines of scrollback kept (default [`DEFAULT_SCROLLBACK_LINES`], cap [`MAX_SCROLLBACK_LINES`]).
    #[serde(default)]
    pub scrollback_lines: Option<usize>,
}

/// What a PTY session is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtyInfo {
    pub id: String,
    pub pid: u32,
    pub argv: Vec<String>,
    pub user: Option<String>,
    pub rows: u16,
    pub cols: u16,
    pub created_unix_ms: u64,
    /// Attachments streaming from it now.
    pub attached: u32,
    pub title: String,
    /// How its command ended, once it has.
    pub exited: Option<ExitStatus>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    pub name: String,
    /// `file`, `dir`, `symlink` or `other`.
    pub kind: String,
    pub size: u64,
    pub mode: u32,
    pub mtime_unix_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    Hello {
        version: u32,
        #[serde(default)]
        token: Option<String>,
    },
    Exec(ExecSpec),
    Health,
    /// Set the machine's wall clock (a guest has no battery-backed clock, and a restored
    /// snapshot wakes with the time it was taken). Answered by `time_set`.
    SetTime {
        unix_ms: u64,
    },
    /// Mix host randomness into the guest's pool (at most [`MAX_ENTROPY_SEED`] bytes): a
    /// restored snapshot otherwise wakes with the random state every other restore of it has.
    /// Answered by `ok`.
    AddEntropy {
        seed: Vec<u8>,
    },
    /// Stop everything, flush and unmount, power off.
    Shutdown,
    /// Stream a file: answered by `file {size, mode}`, its bytes in `TAG_DATA` frames, then
    /// `done {bytes}`. Files larger than `max_bytes` (default and cap [`MAX_FILE_BYTES`]) are refused.
    ReadFile {
        path: String,
        #[serde(default)]
        max_bytes: Option<u64>,
    },
    /// Replace a file atomically with `size` bytes the client sends as `TAG_DATA` frames after
    /// the server's `ready`; answered by `done {bytes}`. The file gets `mode` (default 0644)
    /// and, when `user` is set, that user's ownership; `create_dirs` makes missing parents.
    WriteFile {
        path: String,
        size: u64,
        #[serde(default)]
        mode: Option<u32>,
        #[serde(default)]
        user: Option<String>,
        #[serde(default)]
        create_dirs: bool,
    },
    /// Answered by `dir_listing`.
    ListDir {
        path: String,
    },
    /// Answered by `pty_opened`.
    PtyOpen(PtySpec),
    /// Answered by `pty_list`.
    PtyList,
    /// Answered by `ok`. Also accepted on an attach stream for that stream's session.
    PtyResize {
        id: String,
        rows: u16,
        cols: u16,
    },
    /// Sends a signal (a number) to the session's foreground process group; answered by `ok`.
    PtySignal {
        id: String,
        signal: i32,
    },
    /// Hangs the session up, kills what is left of it and forgets it; answered by `ok`.
    PtyClose {
        id: String,
    },
    /// Types `data` into the session as if at its keyboard; answered by `ok` once all of it is
    /// in, or by a `busy` error when the session's program takes no input for a few seconds.
    /// At most [`MAX_PTY_WRITE`] bytes.
    PtyWrite {
        id: String,
        data: String,
    },
    /// The session's output from byte offset `after` on (offsets count every byte it ever
    /// wrote; the newest [`PTY_LOG_BYTES`] are kept): answered by `pty_output`, then its
    /// bytes in `TAG_DATA` frames. Waits up to `wait_ms` (at most [`MAX_PTY_WAIT_MS`]) for
    /// output when there is none past `after` yet.
    PtyRead {
        id: String,
        #[serde(default)]
        after: u64,
        #[serde(default)]
        max_bytes: Option<u32>,
        #[serde(default)]
        wait_ms: u32,
    },
    /// What the session's screen shows now; answered by `pty_screen`.
    PtyScreen {
        id: String,
    },
    /// Turns this connection into a stream of the session: `pty_attached`, the scrollback and
    /// screen (`TAG_SCROLLBACK`, `TAG_SCREEN`, as many bytes as announced), then live output
    /// in `TAG_PTY` frames; the client's `TAG_PTY` frames are typed in (unless `read_only`).
    /// Closing the connection detaches.
    PtyAttach {
        id: String,
        /// Lines of scrollback to send (default: all kept).
        #[serde(default)]
        scrollback_lines: Option<usize>,
        #[serde(default)]
        read_only: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Hello {
        version: u32,
        uptime_ms: u64,
        #[serde(default)]
        capabilities: Vec<String>,
    },
    Started {
        pid: u32,
    },
    /// `code` when the command exited, `signal` when a signal ended it. `truncated`: it was
    /// killed for writing more than its output limit.
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
        timed_out: bool,
        #[serde(default)]
        truncated: bool,
    },
    Health {
        uptime_ms: u64,
        mem_available_kib: u64,
        load1: f64,
    },
    TimeSet,
    ShuttingDown,
    /// A request refused or failed. `kind` is absent from older servers (see [`ErrorKind`]).
    Error {
        #[serde(default)]
        kind: ErrorKind,
        message: String,
    },
    /// Acknowledges a request that has no other answer.
    Ok,
    /// Before a file's bytes.
    File {
        size: u64,
        mode: u32,
    },
    /// The server waits for the bytes of a `write_file`.
    Ready,
    /// A file transfer finished: `bytes` went through.
    Done {
        bytes: u64,
    },
    DirListing {
        entries: Vec<DirEntry>,
        truncated: bool,
    },
    PtyOpened {
        info: PtyInfo,
    },
    PtyList {
        sessions: Vec<PtyInfo>,
    },
    /// Begins an attach stream; `scrollback_bytes` and `screen_bytes` of the two replays follow.
    PtyAttached {
        info: PtyInfo,
        scrollback_bytes: u64,
        screen_bytes: u64,
    },
    /// On an attach stream: the session's size changed (from any attachment).
    PtyResized {
        rows: u16,
        cols: u16,
    },
    /// On an attach stream: the command ended; the stream closes after this.
    PtyExited {
        status: ExitStatus,
    },
    /// On an attach stream: this reader fell too far behind and is dropped (attach again).
    PtyLagged,
    /// Answers `pty_read`: the output from offset `start` to `end` follows (`end - start`
    /// bytes in `TAG_DATA` frames). `start` is past the asked offset when what lay between
    /// is no longer kept; `end` is where the next read goes on from.
    PtyOutput {
        start: u64,
        end: u64,
        exited: Option<ExitStatus>,
    },
    /// Answers `pty_screen`: the visible screen as text (rows joined by `\n`, cells never
    /// written to left out), its size, where the cursor is (0-based) and the window title.
    PtyScreen {
        rows: u16,
        cols: u16,
        cursor_row: u16,
        cursor_col: u16,
        text: String,
        title: String,
        exited: Option<ExitStatus>,
    },
}

impl ExecSpec {
    pub fn new(argv: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self { argv: argv.into_iter().map(Into::into).collect(), ..Self::default() }
    }

    /// The output limit in force: the client's, never above [`MAX_OUTPUT_BYTES`].
    pub fn output_limit(&self) -> u64 {
        self.max_output_bytes.unwrap_or(MAX_OUTPUT_BYTES).min(MAX_OUTPUT_BYTES)
    }

    /// Checks the limits a server enforces.
    pub fn validate(&self) -> Result<(), String> {
        if self.argv.is_empty() || self.argv[0].is_empty() {
            return Err("argv is empty".into());
        }
        if self.argv.len() > MAX_ARGS {
            return Err(format!("argv has {} entries, at most {MAX_ARGS} allowed", self.argv.len()));
        }
        validate_env(&self.env)
    }
}

impl PtySpec {
    /// Checks the limits a server enforces.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(id) = &self.id {
            validate_pty_id(id)?;
        }
        validate_size(self.rows, self.cols)?;
        if self.argv.len() > MAX_ARGS {
            return Err(format!("argv has {} entries, at most {MAX_ARGS} allowed", self.argv.len()));
        }
        if self.argv.first().is_some_and(|a| a.is_empty()) {
            return Err("argv[0] is empty".into());
        }
        validate_env(&self.env)?;
        if self.scrollback_lines.is_some_and(|n| n > MAX_SCROLLBACK_LINES) {
            return Err(format!("scrollback_lines: at most {MAX_SCROLLBACK_LINES}"));
        }
        Ok(())
    }
}

/// Environment a command is given: at most [`MAX_ENV`] entries, names non-empty without `=`.
pub fn validate_env(env: &[(String, String)]) -> Result<(), String> {
    if env.len() > MAX_ENV {
        return Err(format!("env has {} entries, at most {MAX_ENV} allowed", env.len()));
    }
    if env.iter().any(|(k, _)| k.is_empty() || k.contains('=')) {
        return Err("env names must be non-empty and contain no `=`".into());
    }
    Ok(())
}

/// A terminal size both dimensions of which are within bounds.
pub fn validate_size(rows: u16, cols: u16) -> Result<(), String> {
    if rows == 0 || cols == 0 || rows > MAX_ROWS || cols > MAX_COLS {
        return Err(format!("terminal size {rows}x{cols} out of range (1..={MAX_ROWS} rows, 1..={MAX_COLS} cols)"));
    }
    Ok(())
}

/// A PTY id: 1 to [`MAX_PTY_ID_LEN`] characters of `[A-Za-z0-9_.-]`.
pub fn validate_pty_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_PTY_ID_LEN || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) {
        return Err(format!("pty id must be 1-{MAX_PTY_ID_LEN} characters of [A-Za-z0-9_.-]"));
    }
    Ok(())
}

/// A path a file request may name: absolute, no NUL, bounded.
pub fn validate_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') || path.contains('\0') || path.len() > MAX_PATH_LEN {
        return Err(format!("path must be absolute, without NUL, at most {MAX_PATH_LEN} bytes"));
    }
    Ok(())
}

// `Eq` for Event: f64 in Health is never NaN (a load average).
impl Eq for Event {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_stable_json() {
        let r = Request::Exec(ExecSpec { timeout_secs: Some(5), ..ExecSpec::new(["true"]) });
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(s, r#"{"type":"exec","argv":["true"],"env":[],"cwd":null,"user":null,"timeout_secs":5,"max_output_bytes":null,"stdin":false}"#);
        assert_eq!(serde_json::from_str::<Request>(r#"{"type":"exec","argv":["a"]}"#).unwrap(), Request::Exec(ExecSpec::new(["a"])));
        assert_eq!(serde_json::from_str::<Request>(r#"{"type":"hello","version":1}"#).unwrap(), Request::Hello { version: 1, token: None });
        assert!(serde_json::from_str::<Request>(r#"{"type":"launch"}"#).is_err());
    }

    #[test]
    fn errors_carry_a_kind_and_read_without_one() {
        let e = Event::Error { kind: ErrorKind::NotFound, message: "no pty session `x`".into() };
        let s = serde_json::to_string(&e).unwrap();
        assert_eq!(s, r#"{"type":"error","kind":"not_found","message":"no pty session `x`"}"#);
        assert_eq!(serde_json::from_str::<Event>(&s).unwrap(), e);
        // An older agent (in a snapshot) sends no kind.
        let old: Event = serde_json::from_str(r#"{"type":"error","message":"wrong token"}"#).unwrap();
        assert_eq!(old, Event::Error { kind: ErrorKind::Unknown, message: "wrong token".into() });
        // A newer one may send a kind this side does not know.
        let newer: Event = serde_json::from_str(r#"{"type":"error","kind":"quota_exceeded","message":"m"}"#).unwrap();
        assert_eq!(newer, Event::Error { kind: ErrorKind::Unknown, message: "m".into() });
        for kind in [
            ErrorKind::NotFound,
            ErrorKind::Exists,
            ErrorKind::Denied,
            ErrorKind::Invalid,
            ErrorKind::TooLarge,
            ErrorKind::Busy,
            ErrorKind::Closed,
            ErrorKind::Failed,
            ErrorKind::Unknown,
        ] {
            let wire = serde_json::to_string(&kind).unwrap();
            assert_eq!(wire, format!("\"{kind}\""));
            assert_eq!(serde_json::from_str::<ErrorKind>(&wire).unwrap(), kind);
        }
    }

    #[test]
    fn limits_are_enforced() {
        let n = |n| ExecSpec::new(vec!["x"; n]);
        assert!(n(0).validate().is_err());
        assert!(n(1).validate().is_ok());
        assert!(n(MAX_ARGS + 1).validate().is_err());
        let bad_env = ExecSpec { env: vec![("A=B".into(), "c".into())], ..n(1) };
        assert!(bad_env.validate().is_err());
        assert_eq!(ExecSpec { max_output_bytes: Some(u64::MAX), ..n(1) }.output_limit(), MAX_OUTPUT_BYTES);
    }

    #[test]
    fn pty_specs_paths_and_ids_are_bounded() {
        let ok = PtySpec { rows: 24, cols: 80, ..PtySpec::default() };
        assert!(ok.validate().is_ok());
        for bad in [
            PtySpec { rows: 0, ..ok.clone() },
            PtySpec { cols: MAX_COLS + 1, ..ok.clone() },
            PtySpec { id: Some("a/b".into()), ..ok.clone() },
            PtySpec { id: Some("x".repeat(MAX_PTY_ID_LEN + 1)), ..ok.clone() },
            PtySpec { scrollback_lines: Some(MAX_SCROLLBACK_LINES + 1), ..ok.clone() },
            PtySpec { argv: vec![String::new()], ..ok.clone() },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        assert!(validate_path("/home/x").is_ok());
        for bad in ["relative", "/a\0b", &format!("/{}", "a".repeat(MAX_PATH_LEN))] {
            assert!(validate_path(bad).is_err(), "{bad}");
        }
        let r: Request = serde_json::from_str(r#"{"type":"pty_open","rows":24,"cols":80}"#).unwrap();
        assert_eq!(r, Request::PtyOpen(ok));
    }
}
