//! The calling side: hello, then short requests (`&mut self`) or one streaming request that
//! takes the connection (`self`).

use std::io::{Read, Write};
use std::time::Duration;

use hearth_proto::control::{
    DirEntry, ErrorKind, Event, ExecSpec, ExitStatus, PtyInfo, PtySpec, Request, DATA_CHUNK, MAX_PTY_READ, PROTOCOL_VERSION, TAG_CONTROL, TAG_DATA, TAG_SCREEN, TAG_SCROLLBACK,
    TAG_STDERR, TAG_STDIN, TAG_STDOUT,
};
use hearth_proto::frame::{read_frame, write_frame};

use crate::conn::Conn;
pub use crate::stream::PtyEvent;
use crate::stream::{keys_bytes, resize_bytes, Decoder};

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Reading or writing a frame on the connection failed: its cause (reset? timed out?)
    /// is the part a caller acts on, so it is kept whole.
    #[error("protocol error: frame i/o failed: {0} ({kind:?})", kind = .0.kind())]
    FrameIo(std::io::Error),
    /// Nothing came from the server within the deadline the caller set: a busy or stalled
    /// guest, not a broken connection. Named so nobody reads "os error 11" again.
    #[error("the agent said nothing for {waited:?} while {what}")]
    TimedOut { what: &'static str, waited: Duration },
    /// The server answered `error`: `kind` says what a caller may act on (`unknown` from a
    /// server older than error kinds), `message` is for people.
    #[error("refused: {message}")]
    Refused { kind: ErrorKind, message: String },
    #[error("{what} failed")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl From<hearth_proto::FrameError> for ExecError {
    fn from(e: hearth_proto::FrameError) -> Self {
        match e {
            hearth_proto::FrameError::Io(io) => ExecError::FrameIo(io),
            e => ExecError::Protocol(e.to_string()),
        }
    }
}

impl ExecError {
    /// A read that ran past `waited` becomes [`ExecError::TimedOut`]; other errors stay.
    fn deadline(self, what: &'static str, waited: Option<Duration>) -> Self {
        match (self, waited) {
            (ExecError::FrameIo(e), Some(waited)) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => ExecError::TimedOut { what, waited },
            (e, _) => e,
        }
    }

    /// The kind of a refusal; None for errors of the protocol or the connection.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            ExecError::Refused { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecExit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub truncated: bool,
}

impl ExecExit {
    /// A shell-style exit status: the code, or 128 + the signal.
    pub fn status(&self) -> i32 {
        self.code.unwrap_or_else(|| 128 + self.signal.unwrap_or(0))
    }
}

/// One connection that has said hello.
pub struct ExecClient<C: Conn> {
    conn: C,
    /// The server's uptime when it answered hello.
    pub uptime_ms: u64,
    pub capabilities: Vec<String>,
}

impl<C: Conn> ExecClient<C> {
    /// Says hello on a fresh connection; `timeout` bounds the exchange.
    pub fn hello(mut conn: C, token: Option<&str>, timeout: Duration) -> Result<Self, ExecError> {
        conn.set_read_timeout_conn(Some(timeout)).map_err(io_err("setting a read timeout"))?;
        send(&mut conn, &Request::Hello { version: PROTOCOL_VERSION, token: token.map(str::to_string) })?;
        let (uptime_ms, capabilities) = match recv_control(&mut conn).map_err(|e| e.deadline("saying hello", Some(timeout)))? {
            Some(Event::Hello { version, uptime_ms, capabilities }) if version == PROTOCOL_VERSION => (uptime_ms, capabilities),
            Some(Event::Hello { version, .. }) => return Err(ExecError::Protocol(format!("server speaks version {version}, we speak {PROTOCOL_VERSION}"))),
            Some(Event::Error { kind, message }) => return Err(ExecError::Refused { kind, message }),
            other => return Err(ExecError::Protocol(format!("expected hello, got {other:?}"))),
        };
        conn.set_read_timeout_conn(None).map_err(io_err("clearing the read timeout"))?;
        Ok(Self { conn, uptime_ms, capabilities })
    }

    /// Runs a command, copying its output to `stdout` and `stderr` as it comes.
    pub fn exec(self, spec: ExecSpec, stdout: &mut dyn Write, stderr: &mut dyn Write) -> Result<ExecExit, ExecError> {
        self.exec_io(spec, None, stdout, stderr)
    }

    /// Runs a command with `stdin` (when given) streamed to it, copying its output as it comes.
    /// The stdin feeder runs on its own thread and ends at its EOF or when the server stops
    /// taking input; this returns when the command ends, whatever the feeder is doing.
    pub fn exec_io(mut self, mut spec: ExecSpec, stdin: Option<Box<dyn Read + Send>>, stdout: &mut dyn Write, stderr: &mut dyn Write) -> Result<ExecExit, ExecError> {
        // Nothing may hang: the server's own limits end a command, plus a margin for the wire.
        let wait = spec.timeout_secs.map(|t| Duration::from_secs(t + 30));
        self.conn.set_read_timeout_conn(wait).map_err(io_err("setting a read timeout"))?;
        spec.stdin = stdin.is_some();
        send(&mut self.conn, &Request::Exec(spec))?;
        if let Some(mut stdin) = stdin {
            let feeder = self.conn.try_clone_conn().map_err(io_err("cloning the connection"))?;
            std::thread::spawn(move || feed(feeder, &mut *stdin));
        }
        loop {
            let Some(frame) = read_frame(&mut self.conn).map_err(|e| ExecError::from(e).deadline("running a command", wait))? else {
                return Err(ExecError::Protocol("the server closed the connection before the command ended".into()));
            };
            let written = match frame.tag {
                TAG_STDOUT => stdout.write_all(&frame.payload).and_then(|()| stdout.flush()),
                TAG_STDERR => stderr.write_all(&frame.payload).and_then(|()| stderr.flush()),
                TAG_CONTROL => match parse_event(&frame.payload)? {
                    Event::Started { .. } => Ok(()),
                    Event::Exited { code, signal, timed_out, truncated } => {
                        // A feeder still writing gets an error and stops.
                        self.conn.shutdown_conn();
                        return Ok(ExecExit { code, signal, timed_out, truncated });
                    }
                    Event::Error { kind, message } => return Err(ExecError::Refused { kind, message }),
                    other => return Err(ExecError::Protocol(format!("unexpected {other:?}"))),
                },
                t => return Err(ExecError::Protocol(format!("unknown frame tag {t}"))),
            };
            written.map_err(io_err("writing command output"))?;
        }
    }

    /// Runs a command and collects its output (for short commands).
    pub fn exec_collect(self, spec: ExecSpec) -> Result<(ExecExit, Vec<u8>, Vec<u8>), ExecError> {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let exit = self.exec(spec, &mut out, &mut err)?;
        Ok((exit, out, err))
    }

    /// Sends a short request and returns its answer; an `error` answer is `Refused`.
    pub fn request(&mut self, req: &Request) -> Result<Event, ExecError> {
        send(&mut self.conn, req)?;
        match recv_control(&mut self.conn)? {
            Some(Event::Error { kind, message }) => Err(ExecError::Refused { kind, message }),
            Some(ev) => Ok(ev),
            None => Err(ExecError::Protocol("the server closed the connection".into())),
        }
    }

    /// Asks for the server's health.
    pub fn health(&mut self) -> Result<Event, ExecError> {
        match self.request(&Request::Health)? {
            ev @ Event::Health { .. } => Ok(ev),
            other => Err(unexpected("health", other)),
        }
    }

    /// Sets the server's wall clock.
    pub fn set_time(&mut self, unix_ms: u64) -> Result<(), ExecError> {
        match self.request(&Request::SetTime { unix_ms })? {
            Event::TimeSet => Ok(()),
            other => Err(unexpected("time_set", other)),
        }
    }

    /// Mixes `seed` into the server's randomness.
    pub fn add_entropy(&mut self, seed: &[u8]) -> Result<(), ExecError> {
        self.pty_ok(&Request::AddEntropy { seed: seed.to_vec() })
    }

    /// Asks the server to stop everything and power off; returns once acknowledged.
    pub fn shutdown(mut self) -> Result<(), ExecError> {
        send(&mut self.conn, &Request::Shutdown)?;
        match recv_control(&mut self.conn)? {
            Some(Event::ShuttingDown) | None => Ok(()),
            other => Err(ExecError::Protocol(format!("expected shutting_down, got {other:?}"))),
        }
    }

    /// Lists a directory: its entries (sorted by name) and whether the list was cut.
    pub fn list_dir(&mut self, path: &str) -> Result<(Vec<DirEntry>, bool), ExecError> {
        match self.request(&Request::ListDir { path: path.into() })? {
            Event::DirListing { entries, truncated } => Ok((entries, truncated)),
            other => Err(unexpected("dir_listing", other)),
        }
    }

    /// Copies a file of at most `max_bytes` into `out`; returns its size.
    pub fn read_file(mut self, path: &str, max_bytes: Option<u64>, out: &mut dyn Write) -> Result<u64, ExecError> {
        match self.request(&Request::ReadFile { path: path.into(), max_bytes })? {
            Event::File { .. } => {}
            other => return Err(unexpected("file", other)),
        }
        loop {
            match read_frame(&mut self.conn)? {
                Some(f) if f.tag == TAG_DATA => out.write_all(&f.payload).map_err(io_err("writing the file out"))?,
                Some(f) if f.tag == TAG_CONTROL => {
                    return match parse_event(&f.payload)? {
                        Event::Done { bytes } => Ok(bytes),
                        Event::Error { kind, message } => Err(ExecError::Refused { kind, message }),
                        other => Err(unexpected("done", other)),
                    }
                }
                Some(f) => return Err(ExecError::Protocol(format!("unexpected frame tag {}", f.tag))),
                None => return Err(ExecError::Protocol("the server closed the connection inside a file".into())),
            }
        }
    }

    /// Replaces a file atomically with `size` bytes from `src`; returns the bytes written.
    pub fn write_file(mut self, file: WriteFile<'_>, src: &mut dyn Read) -> Result<u64, ExecError> {
        let req = Request::WriteFile { path: file.path.into(), size: file.size, mode: file.mode, user: file.user.map(str::to_string), create_dirs: file.create_dirs };
        match self.request(&req)? {
            Event::Ready => {}
            other => return Err(unexpected("ready", other)),
        }
        let mut buf = vec![0u8; DATA_CHUNK];
        let mut left = file.size;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = src.read(&mut buf[..want]).map_err(io_err("reading the file to send"))?;
            if n == 0 {
                return Err(ExecError::Protocol(format!("the source ended {left} bytes short of the announced size")));
            }
            write_frame(&mut self.conn, TAG_DATA, &buf[..n])?;
            left -= n as u64;
        }
        match recv_control(&mut self.conn)? {
            Some(Event::Done { bytes }) => Ok(bytes),
            Some(Event::Error { kind, message }) => Err(ExecError::Refused { kind, message }),
            other => Err(ExecError::Protocol(format!("expected done, got {other:?}"))),
        }
    }

    /// Opens a terminal session.
    pub fn pty_open(&mut self, spec: PtySpec) -> Result<PtyInfo, ExecError> {
        match self.request(&Request::PtyOpen(spec))? {
            Event::PtyOpened { info } => Ok(info),
            other => Err(unexpected("pty_opened", other)),
        }
    }

    pub fn pty_list(&mut self) -> Result<Vec<PtyInfo>, ExecError> {
        match self.request(&Request::PtyList)? {
            Event::PtyList { sessions } => Ok(sessions),
            other => Err(unexpected("pty_list", other)),
        }
    }

    /// Resizes, signals or closes a session: requests answered by `ok`.
    pub fn pty_ok(&mut self, req: &Request) -> Result<(), ExecError> {
        match self.request(req)? {
            Event::Ok => Ok(()),
            other => Err(unexpected("ok", other)),
        }
    }

    /// A session's output from offset `after` (see [`Request::PtyRead`]).
    pub fn pty_read(&mut self, id: &str, after: u64, max_bytes: Option<u32>, wait_ms: u32) -> Result<PtyOutput, ExecError> {
        let (start, end, exited) = match self.request(&Request::PtyRead { id: id.into(), after, max_bytes, wait_ms })? {
            Event::PtyOutput { start, end, exited } => (start, end, exited),
            other => return Err(unexpected("pty_output", other)),
        };
        let len = end.checked_sub(start).filter(|&n| n <= u64::from(MAX_PTY_READ)).ok_or_else(|| ExecError::Protocol(format!("pty_output from {start} to {end}")))?;
        let mut data = Vec::with_capacity(len as usize);
        while (data.len() as u64) < len {
            match read_frame(&mut self.conn)? {
                Some(f) if f.tag == TAG_DATA && (data.len() + f.payload.len()) as u64 <= len => data.extend_from_slice(&f.payload),
                other => return Err(ExecError::Protocol(format!("expected {len} bytes of pty output, got {other:?}"))),
            }
        }
        Ok(PtyOutput { start, end, exited, data })
    }

    /// What a session's screen shows now.
    pub fn pty_screen(&mut self, id: &str) -> Result<Event, ExecError> {
        match self.request(&Request::PtyScreen { id: id.into() })? {
            ev @ Event::PtyScreen { .. } => Ok(ev),
            other => Err(unexpected("pty_screen", other)),
        }
    }

    /// Attaches to a session: its replay now, its live output from [`PtyStream::next`].
    pub fn pty_attach(mut self, id: &str, scrollback_lines: Option<usize>, read_only: bool) -> Result<PtyStream<C>, ExecError> {
        let (info, scrollback_bytes, screen_bytes) = match self.request(&Request::PtyAttach { id: id.into(), scrollback_lines, read_only })? {
            Event::PtyAttached { info, scrollback_bytes, screen_bytes } => (info, scrollback_bytes, screen_bytes),
            other => return Err(unexpected("pty_attached", other)),
        };
        let mut replay = |tag: u8, len: u64| -> Result<Vec<u8>, ExecError> {
            let mut out = Vec::new();
            while (out.len() as u64) < len {
                match read_frame(&mut self.conn)? {
                    Some(f) if f.tag == tag => out.extend_from_slice(&f.payload),
                    other => return Err(ExecError::Protocol(format!("expected replay frames with tag {tag}, got {other:?}"))),
                }
            }
            Ok(out)
        };
        let scrollback = replay(TAG_SCROLLBACK, scrollback_bytes)?;
        let screen = replay(TAG_SCREEN, screen_bytes)?;
        Ok(PtyStream { id: id.into(), conn: self.conn, decoder: Decoder::new(), info, scrollback, screen })
    }
}

/// A piece of a session's output (see [`Request::PtyRead`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PtyOutput {
    /// The offset of `data`'s first byte: past the one asked for when what lay between is
    /// no longer kept.
    pub start: u64,
    /// Where the next read goes on from.
    pub end: u64,
    pub exited: Option<ExitStatus>,
    pub data: Vec<u8>,
}

/// A file to write: where, how big, how.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteFile<'a> {
    pub path: &'a str,
    pub size: u64,
    pub mode: Option<u32>,
    pub user: Option<&'a str>,
    pub create_dirs: bool,
}

/// An attached terminal session.
pub struct PtyStream<C: Conn> {
    id: String,
    conn: C,
    /// The live stream's bytes read and not yet a whole frame.
    decoder: Decoder,
    pub info: PtyInfo,
    /// Scrollback lines, formatted, each ended by CRLF.
    pub scrollback: Vec<u8>,
    /// Escape sequences that draw the exact screen (contents, cursor, modes) on a blank terminal.
    pub screen: Vec<u8>,
}

impl<C: Conn> PtyStream<C> {
    /// The next thing the session says; `timeout` bounds the wait for more bytes (None:
    /// forever). A timeout is [`ExecError::TimedOut`]; a frame it cut in two is kept whole for
    /// the next call.
    pub fn next(&mut self, timeout: Option<Duration>) -> Result<PtyEvent, ExecError> {
        self.conn.set_read_timeout_conn(timeout).map_err(io_err("setting a read timeout"))?;
        let mut buf = [0u8; 16 << 10];
        loop {
            if let Some(ev) = self.decoder.next_event()? {
                return Ok(ev);
            }
            match self.conn.read(&mut buf) {
                Ok(0) if self.decoder.pending() == 0 => return Ok(PtyEvent::Closed),
                Ok(0) => return Err(hearth_proto::FrameError::Truncated.into()),
                Ok(n) => self.decoder.feed(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ExecError::FrameIo(e).deadline("following a terminal", timeout)),
            }
        }
    }

    /// The session's id, the connection itself and the stream's decoder (with what it
    /// already read), for a caller that reads the stream and types with [`crate::stream`]
    /// on its own terms (the server does, from async code).
    pub fn into_parts(self) -> (String, C, Decoder) {
        (self.id, self.conn, self.decoder)
    }

    /// A handle that types into the session and resizes it, usable from another thread.
    pub fn input(&self) -> Result<PtyInput<C>, ExecError> {
        Ok(PtyInput { id: self.id.clone(), conn: self.conn.try_clone_conn().map_err(io_err("cloning the connection"))? })
    }

    /// Detaches (the session lives on).
    pub fn detach(self) {
        self.conn.shutdown_conn();
    }
}

/// The writing half of an attached session.
pub struct PtyInput<C: Conn> {
    id: String,
    conn: C,
}

impl<C: Conn> PtyInput<C> {
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), ExecError> {
        self.conn.write_all(&keys_bytes(bytes)).map_err(io_err("typing into the session"))
    }

    pub fn resize(&mut self, rows: u16, cols: u16) -> Result<(), ExecError> {
        self.conn.write_all(&resize_bytes(&self.id, rows, cols)).map_err(io_err("resizing the session"))
    }

    /// Ends the attachment from this side: the stream's `next` returns `Closed` (detach).
    pub fn close(&self) {
        self.conn.shutdown_conn();
    }
}

/// Copies `stdin` into `TAG_STDIN` frames, then ends it with an empty one.
fn feed<C: Conn>(mut conn: C, stdin: &mut dyn Read) {
    let mut buf = vec![0u8; DATA_CHUNK];
    loop {
        match stdin.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if write_frame(&mut conn, TAG_STDIN, &buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
    let _ = write_frame(&mut conn, TAG_STDIN, &[]);
}

fn io_err(what: &'static str) -> impl Fn(std::io::Error) -> ExecError {
    move |source| ExecError::Io { what, source }
}

fn unexpected(wanted: &str, got: Event) -> ExecError {
    ExecError::Protocol(format!("expected {wanted}, got {got:?}"))
}

fn send<C: Conn>(conn: &mut C, req: &Request) -> Result<(), ExecError> {
    write_frame(conn, TAG_CONTROL, &serde_json::to_vec(req).expect("requests serialize"))?;
    Ok(())
}

fn recv_control<C: Conn>(conn: &mut C) -> Result<Option<Event>, ExecError> {
    match read_frame(conn)? {
        None => Ok(None),
        Some(f) if f.tag == TAG_CONTROL => parse_event(&f.payload).map(Some),
        Some(f) => Err(ExecError::Protocol(format!("expected a control frame, got tag {}", f.tag))),
    }
}

fn parse_event(payload: &[u8]) -> Result<Event, ExecError> {
    serde_json::from_slice(payload).map_err(|e| ExecError::Protocol(format!("bad control message: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_proto::frame::read_frame;
    use std::os::unix::net::UnixStream;

    /// A server that says hello, takes the exec, starts streaming, then drops the connection.
    fn dying_server(conn: UnixStream) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let mut c = conn;
            read_frame(&mut c).unwrap();
            send_event(&mut c, &Event::Hello { version: PROTOCOL_VERSION, uptime_ms: 1, capabilities: vec![] });
            read_frame(&mut c).unwrap();
            send_event(&mut c, &Event::Started { pid: 9 });
            write_frame(&mut c, TAG_STDOUT, b"partial").unwrap();
        })
    }

    fn send_event(c: &mut UnixStream, ev: &Event) {
        write_frame(c, TAG_CONTROL, &serde_json::to_vec(ev).unwrap()).unwrap();
    }

    #[test]
    fn a_connection_dropped_mid_exec_is_a_clear_error_not_a_hang() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let server = dying_server(theirs);
        let client = ExecClient::hello(ours, None, Duration::from_secs(5)).unwrap();
        let mut out = Vec::new();
        let err = client.exec(ExecSpec::new(["sleep", "100"]), &mut out, &mut std::io::sink()).unwrap_err();
        server.join().unwrap();
        assert_eq!(out, b"partial");
        assert!(err.to_string().contains("closed the connection before the command ended"), "{err}");
    }

    #[test]
    fn a_silent_server_times_out_at_hello() {
        // The peer stays open and says nothing: only the hello timeout can end this call.
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let Err(err) = ExecClient::hello(ours, None, Duration::from_millis(300)) else { panic!("hello succeeded with a mute peer") };
        assert_eq!(err.to_string(), "the agent said nothing for 300ms while saying hello");
        assert!(matches!(&err, ExecError::TimedOut { .. }), "{err:?}");
    }
}
