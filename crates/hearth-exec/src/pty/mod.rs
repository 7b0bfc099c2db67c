//! Terminal sessions: a command on a PTY that outlives the connections watching it.
//!
//! Each session has one reader thread that drains the PTY and fans the bytes out to its
//! attachments, and one parser thread that feeds the same bytes, in the same order, to a
//! headless terminal ([`vt100`], with bounded scrollback). The parser is the slow part (under
//! emulation it takes about three times what the PTY does), so it never holds the output up:
//! it works from a queue bounded by [`MAX_UNPARSED`], and when it falls that far behind, the
//! oldest queued output is dropped unparsed and the terminal starts afresh from what remains
//! (a flood's scrollback keeps its end, the screen is right). Once it is [`FLOOD_BEHIND`]
//! behind it stops until the output pauses for `FLOOD_PAUSE` (in [`screen`]): parsing a flood that will be
//! dropped anyway would only take the CPU the output itself needs. An attachment is a connection:
//! it first gets the exact screen and the scrollback, taken under the lock that orders output
//! after the parser caught up with the queue, so nothing is lost or doubled between the replay
//! and the live stream. Each attachment has its own queue bounded in bytes; one that falls
//! [`MAX_QUEUED_BYTES`] behind is dropped (told `pty_lagged`), so a slow reader never stalls
//! the shell or the other readers. Closing a connection detaches; only `pty_close` ends a
//! session. An echo wakes no agent thread beyond the PTY reader: it is parsed and written to an
//! idle attachment by the reader itself (see outlet.rs); a flood is gathered into 32 KiB
//! writes.
//!
//! Clients that poll instead of attaching (the REST API's terminal calls, the Hypha bridge)
//! type with `pty_write`, read the output by offset from [`log`] with `pty_read`, and ask
//! the parsed screen with `pty_screen`.
//!
//! Layout: this module keeps the sessions and answers the short `pty_*` requests;
//! [`screen`] is the parser's queue and the headless terminal, [`attach`] the PTY reader
//! and the attach streams, [`log`] the output by offset, [`spawn`] starting the command on
//! a new PTY.

mod attach;
mod log;
mod screen;
mod spawn;

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use hearth_proto::control::{
    validate_size, ErrorKind, Event, PtyInfo, PtySpec, Request, DEFAULT_PTY_READ, DEFAULT_SCROLLBACK_LINES, MAX_PTYS, MAX_PTY_READ, MAX_PTY_WAIT_MS, MAX_PTY_WRITE,
};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::outlet::{Out, Outlet};
use crate::refusal::Refusal;
pub use attach::MAX_QUEUED_BYTES;
use screen::{Parsed, State, Unparsed};
pub use screen::{FLOOD_BEHIND, MAX_UNPARSED};

/// After `pty_close` hangs a session up, what is left of it is killed this much later.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How long `pty_write` waits for a program that takes no input before it gives up.
const WRITE_STALL: Duration = Duration::from_secs(5);
/// `pty_write` writes in pieces this big, each once the PTY has room: a PTY takes a few KiB
/// at once, and a larger write would block past [`WRITE_STALL`].
const WRITE_PIECE: usize = 512;

/// The sessions one server keeps.
#[derive(Default, Clone)]
pub struct Sessions {
    map: Arc<Mutex<HashMap<String, Arc<Session>>>>,
    next_id: Arc<AtomicU64>,
}

struct Session {
    id: String,
    pid: u32,
    argv: Vec<String>,
    user: Option<String>,
    created_unix_ms: u64,
    /// Keystrokes go here; resizes use its fd.
    input: Mutex<File>,
    /// Taken before `parsed` wherever both are.
    state: Mutex<State>,
    /// Wakes the parser: output queued, or the session ended.
    queued: Condvar,
    /// Wakes `pty_read`s waiting for output: output came, or the session ended.
    output: Condvar,
    parsed: Mutex<Parsed>,
}

/// One attachment as the session sees it.
struct Reader {
    id: u64,
    out: Arc<Outlet>,
}

impl Sessions {
    fn get(&self, id: &str) -> Result<Arc<Session>, Refusal> {
        self.map.lock().expect("no panics while held").get(id).cloned().ok_or_else(|| no_session(id))
    }

    pub fn list(&self) -> Vec<PtyInfo> {
        let mut v: Vec<_> = self.map.lock().expect("no panics while held").values().map(|s| s.info()).collect();
        v.sort_by(|a, b| a.created_unix_ms.cmp(&b.created_unix_ms).then(a.id.cmp(&b.id)));
        v
    }

    /// Starts a session.
    pub fn open(&self, spec: &PtySpec, env: &[(String, String)]) -> Result<PtyInfo, Refusal> {
        spec.validate().map_err(Refusal::invalid)?;
        let mut map = self.map.lock().expect("no panics while held");
        if map.len() >= MAX_PTYS {
            return Err(Refusal::new(ErrorKind::Busy, format!("{MAX_PTYS} pty sessions already open; close one first")));
        }
        let id = match &spec.id {
            Some(id) if map.contains_key(id) => return Err(Refusal::new(ErrorKind::Exists, format!("pty session `{id}` already exists"))),
            Some(id) => id.clone(),
            None => loop {
                let id = format!("t{}", self.next_id.fetch_add(1, Ordering::Relaxed) + 1);
                if !map.contains_key(&id) {
                    break id;
                }
            },
        };
        let (master, child, argv) = spawn::spawn(spec, env)?;
        let reader = File::from(master.try_clone().map_err(|e| Refusal::io("dup of the pty", &e))?);
        let lines = spec.scrollback_lines.unwrap_or(DEFAULT_SCROLLBACK_LINES);
        let session = Arc::new(Session {
            id: id.clone(),
            pid: child.id(),
            argv,
            user: spec.user.clone(),
            created_unix_ms: hearth_proto::unix_ms_now(),
            input: Mutex::new(File::from(master)),
            state: Mutex::new(State::new(spec.rows, spec.cols, lines)),
            queued: Condvar::new(),
            output: Condvar::new(),
            parsed: Mutex::new(Parsed::new(spec.rows, spec.cols, lines)),
        });
        let s = session.clone();
        std::thread::spawn(move || s.drain(reader, child));
        let s = session.clone();
        std::thread::spawn(move || s.parse());
        map.insert(id, session.clone());
        Ok(session.info())
    }

    pub fn resize(&self, id: &str, rows: u16, cols: u16) -> Result<(), Refusal> {
        self.get(id)?.resize(rows, cols)
    }

    /// Types `data` into the session (see [`Request::PtyWrite`]).
    pub fn write(&self, id: &str, data: &[u8]) -> Result<(), Refusal> {
        if data.len() > MAX_PTY_WRITE {
            return Err(Refusal::new(ErrorKind::TooLarge, format!("{} bytes to type; at most {MAX_PTY_WRITE} at once", data.len())));
        }
        let s = self.get(id)?;
        if s.state.lock().expect("no panics while held").exited.is_some() {
            return Err(Refusal::new(ErrorKind::Busy, format!("pty session `{id}` has exited; it takes no more input")));
        }
        let mut input = s.input.lock().expect("no panics while held");
        let deadline = std::time::Instant::now() + WRITE_STALL;
        let mut left = data;
        while !left.is_empty() {
            let wait = deadline.saturating_duration_since(std::time::Instant::now());
            let mut fds = [nix::poll::PollFd::new(input.as_fd(), nix::poll::PollFlags::POLLOUT)];
            let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
            if !matches!(nix::poll::poll(&mut fds, ms), Ok(1..)) {
                let done = data.len() - left.len();
                return Err(Refusal::new(ErrorKind::Busy, format!("the terminal took {done} of {} bytes; its program is not reading input", data.len())));
            }
            let n = input.write(&left[..left.len().min(WRITE_PIECE)]).map_err(|e| Refusal::io("typing into the terminal", &e))?;
            left = &left[n..];
        }
        Ok(())
    }

    /// The session's output from offset `after` (see [`Request::PtyRead`]): the event and
    /// the bytes that follow it.
    pub fn read(&self, id: &str, after: u64, max_bytes: Option<u32>, wait_ms: u32) -> Result<(Event, Vec<u8>), Refusal> {
        let s = self.get(id)?;
        let max = max_bytes.unwrap_or(DEFAULT_PTY_READ).clamp(1, MAX_PTY_READ) as usize;
        let wait = Duration::from_millis(u64::from(wait_ms.min(MAX_PTY_WAIT_MS)));
        let mut st = s.state.lock().expect("no panics while held");
        let deadline = std::time::Instant::now() + wait;
        while st.log.end() <= after && st.exited.is_none() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            st = s.output.wait_timeout(st, left).expect("no panics while held").0;
        }
        let (start, bytes) = st.log.read(after, max);
        Ok((Event::PtyOutput { start, end: start + bytes.len() as u64, exited: st.exited }, bytes))
    }

    /// What the session's screen shows (see [`Request::PtyScreen`]).
    pub fn screen(&self, id: &str) -> Result<Event, Refusal> {
        let s = self.get(id)?;
        let mut st = s.state.lock().expect("no panics while held");
        let mut parsed = s.parsed.lock().expect("no panics while held");
        // Output the parser has not seen yet is on the screen already.
        parsed.catch_up(&mut st);
        let screen = parsed.term.screen();
        let (rows, cols) = screen.size();
        let (cursor_row, cursor_col) = screen.cursor_position();
        Ok(Event::PtyScreen {
            rows: rows.get(),
            cols: cols.get(),
            cursor_row,
            cursor_col,
            text: screen.contents(),
            title: parsed.term.callbacks().title.clone(),
            exited: st.exited,
        })
    }

    pub fn signal(&self, id: &str, signal: i32) -> Result<(), Refusal> {
        let s = self.get(id)?;
        let sig = Signal::try_from(signal).map_err(|_| Refusal::invalid(format!("{signal} is not a signal")))?;
        // The foreground job is what Ctrl-C would reach; the session's own group otherwise.
        let input = s.input.lock().expect("no panics while held");
        let pgrp = nix::unistd::tcgetpgrp(&*input).unwrap_or(Pid::from_raw(s.pid as i32));
        killpg(pgrp, sig).map_err(|e| Refusal::failed(format!("signalling {pgrp}: {e}")))
    }

    /// Hangs the session up and forgets it; what ignores the hangup is killed a little later.
    pub fn close(&self, id: &str) -> Result<(), Refusal> {
        let s = self.map.lock().expect("no panics while held").remove(id).ok_or_else(|| no_session(id))?;
        if s.state.lock().expect("no panics while held").exited.is_none() {
            let pgid = Pid::from_raw(s.pid as i32);
            let _ = killpg(pgid, Signal::SIGHUP);
            let _ = killpg(pgid, Signal::SIGCONT);
            std::thread::spawn(move || {
                std::thread::sleep(CLOSE_GRACE);
                if s.state.lock().expect("no panics while held").exited.is_none() {
                    let _ = killpg(pgid, Signal::SIGKILL);
                }
            });
        }
        Ok(())
    }
}

fn no_session(id: &str) -> Refusal {
    Refusal::not_found(format!("no pty session `{id}`"))
}

impl Session {
    fn next_reader(&self) -> u64 {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed)
    }

    fn info(&self) -> PtyInfo {
        let st = self.state.lock().expect("no panics while held");
        self.info_locked(&st, &self.parsed.lock().expect("no panics while held"))
    }

    fn info_locked(&self, st: &State, parsed: &Parsed) -> PtyInfo {
        PtyInfo {
            id: self.id.clone(),
            pid: self.pid,
            argv: self.argv.clone(),
            user: self.user.clone(),
            rows: st.rows,
            cols: st.cols,
            created_unix_ms: self.created_unix_ms,
            attached: st.readers.len() as u32,
            title: parsed.term.callbacks().title.clone(),
            exited: st.exited,
        }
    }

    fn detach(&self, reader: u64) {
        self.state.lock().expect("no panics while held").readers.retain(|r| {
            if r.id == reader {
                r.out.close();
            }
            r.id != reader
        });
    }

    fn resize(&self, rows: u16, cols: u16) -> Result<(), Refusal> {
        validate_size(rows, cols).map_err(Refusal::invalid)?;
        let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        let input = self.input.lock().expect("no panics while held");
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
        if unsafe { libc::ioctl(input.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
            return Err(Refusal::io("resizing", &std::io::Error::last_os_error()));
        }
        drop(input);
        let mut st = self.state.lock().expect("no panics while held");
        // In output order: the terminal takes the new size where the readers do.
        self.to_parser(&mut st, Unparsed::Resize(rows, cols));
        (st.rows, st.cols) = (rows, cols);
        for r in &st.readers {
            r.out.push(Out::Resized(rows, cols));
        }
        Ok(())
    }

    /// Queues `item` for the parser and wakes it.
    fn to_parser(&self, st: &mut State, item: Unparsed) {
        st.queue(item);
        self.queued.notify_one();
    }

    /// Output to the terminal: see [`State::parse_or_queue`]; the parser is woken if queued.
    fn parse_or_queue(&self, st: &mut State, out: &[u8]) {
        if st.parse_or_queue(&self.parsed, out) {
            self.queued.notify_one();
        }
    }
}

/// `pty_*` requests other than attach, answered with one event.
pub(crate) fn handle(sessions: &Sessions, env: &[(String, String)], req: Request) -> Event {
    let ok = |r: Result<(), Refusal>| r.map_or_else(|r| r.event(), |()| Event::Ok);
    match req {
        Request::PtyOpen(spec) => sessions.open(&spec, env).map_or_else(|r| r.event(), |info| Event::PtyOpened { info }),
        Request::PtyList => Event::PtyList { sessions: sessions.list() },
        Request::PtyResize { id, rows, cols } => ok(sessions.resize(&id, rows, cols)),
        Request::PtySignal { id, signal } => ok(sessions.signal(&id, signal)),
        Request::PtyClose { id } => ok(sessions.close(&id)),
        Request::PtyWrite { id, data } => ok(sessions.write(&id, data.as_bytes())),
        Request::PtyScreen { id } => sessions.screen(&id).unwrap_or_else(|r| r.event()),
        other => Refusal::invalid(format!("not a pty request: {other:?}")).event(),
    }
}
