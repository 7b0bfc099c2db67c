//! Terminal sessions: a command on a PTY that outlives the connections watching it.
//!
//! Each session has one reader thread that drains the PTY and fans the bytes out to its
//! attachments, and one parser thread that feeds the same bytes, in the same order, to a
//! headless terminal ([`vt100`], with bounded scrollback). The parser is the slow part (under
//! emulation it takes about three times what the PTY does), so it never holds the output up:
//! it works from a queue bounded by [`MAX_UNPARSED`], and when it falls that far behind, the
//! oldest queued output is dropped unparsed and the terminal starts afresh from what remains
//! (a flood's scrollback keeps its end, the screen is right). Once it is [`FLOOD_BEHIND`]
//! behind it stops until the output pauses for [`FLOOD_PAUSE`]: parsing a flood that will be
//! dropped anyway would only take the CPU the output itself needs. An attachment is a connection:
//! it first gets the exact screen and the scrollback, taken under the lock that orders output
//! after the parser caught up with the queue, so nothing is lost or doubled between the replay
//! and the live stream. Each attachment has its own queue bounded in bytes; one that falls
//! [`MAX_QUEUED_BYTES`] behind is dropped (told `pty_lagged`), so a slow reader never stalls
//! the shell or the other readers. Closing a connection detaches; only `pty_close` ends a
//! session. An echo wakes no agent thread beyond the PTY reader: it is parsed and written to an
//! idle attachment by the reader itself (see outlet.rs); a flood is gathered into 32 KiB
//! writes.

use std::collections::{HashMap, VecDeque};
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::num::NonZeroU16;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use hearth_proto::control::{
    validate_size, ErrorKind, Event, ExitStatus, PtyInfo, PtySpec, Request, DATA_CHUNK, DEFAULT_SCROLLBACK_LINES, MAX_PTYS, TAG_CONTROL, TAG_PTY, TAG_SCREEN, TAG_SCROLLBACK,
};
use hearth_proto::frame::{read_frame, write_frame};
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::conn::Conn;
use crate::outlet::{Out, Outlet};
use crate::refusal::Refusal;
use crate::reply::{refuse, send};
use crate::server::ServerConfig;
use crate::user;

/// Output an attachment may have queued before it is dropped as too slow.
pub const MAX_QUEUED_BYTES: usize = 4 << 20;
/// Output the terminal may have left to parse; beyond it the oldest is dropped unparsed.
pub const MAX_UNPARSED: usize = 1 << 20;
/// Output left to parse that makes a flood: the parser waits for the output to pause.
pub const FLOOD_BEHIND: usize = 256 << 10;
/// How long output must pause for the parser to take up a flood's remainder.
const FLOOD_PAUSE: Duration = Duration::from_millis(50);
/// Output at most this long, arriving with nothing left to parse, is parsed by the PTY's
/// reader itself: an echo then wakes no parser thread (in a guest, a wake on another vCPU
/// costs an exit to the host).
const PARSE_INLINE: usize = 512;
/// A PTY read this long means output is streaming: see [`gather`].
const GATHER_FROM: usize = 1024;
/// How much [`gather`] collects into one write at most.
const GATHER_MAX: usize = 32 << 10;
/// The pause in the output that ends a gathering (milliseconds).
const GATHER_GAP: u8 = 2;
/// The longest a gathering holds output back.
const GATHER_FOR: Duration = Duration::from_millis(10);
/// An attachment whose peer takes no bytes for this long is dropped.
const STALLED_WRITE: Duration = Duration::from_secs(30);
/// After `pty_close` hangs a session up, what is left of it is killed this much later.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

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
    parsed: Mutex<Parsed>,
}

/// The terminal as far as the parser got.
struct Parsed {
    term: Term,
    scrollback_lines: usize,
    rows: u16,
    cols: u16,
}

/// What the parser has yet to apply, in output order.
enum Unparsed {
    Output(Vec<u8>),
    Resize(u16, u16),
}

impl Parsed {
    fn apply(&mut self, item: Unparsed) {
        match item {
            Unparsed::Output(b) => feed(&mut self.term, &b, self.rows, self.cols, self.scrollback_lines),
            Unparsed::Resize(rows, cols) => {
                if let (Some(r), Some(c)) = (NonZeroU16::new(rows), NonZeroU16::new(cols)) {
                    self.term.set_size(r, c);
                }
                (self.rows, self.cols) = (rows, cols);
            }
        }
    }

    /// A fresh terminal of the same size: what the parser continues with after output was
    /// dropped unparsed.
    fn restart(&mut self) {
        self.term = new_term(self.rows, self.cols, self.scrollback_lines);
    }

    /// Applies an item [`State::pop`] handed over, restarting first when it says so.
    fn take(&mut self, (item, restart): (Unparsed, bool)) {
        if restart {
            self.restart();
        }
        self.apply(item);
    }

    /// Parses everything still queued (`st` is held: nothing is queued meanwhile).
    fn catch_up(&mut self, st: &mut State) {
        while let Some(next) = st.pop() {
            self.take(next);
        }
    }
}

/// The headless terminal: vt100 plus the title it reports through a callback.
type Term = vt100::Parser<TermEvents>;

/// What vt100 reports besides the screen.
#[derive(Default)]
struct TermEvents {
    title: String,
}

/// Longest window title kept.
const MAX_TITLE: usize = 256;

impl vt100::Callbacks for TermEvents {
    fn set_window_title(&mut self, _: &mut vt100::Screen, title: &[u8]) {
        self.title = String::from_utf8_lossy(&title[..title.len().min(MAX_TITLE)]).into_owned();
    }
}

fn new_term(rows: u16, cols: u16, scrollback_lines: usize) -> Term {
    let nz = |n: u16| NonZeroU16::new(n).unwrap_or(NonZeroU16::MIN);
    vt100::Parser::new_with_callbacks(nz(rows), nz(cols), scrollback_lines, TermEvents::default())
}

/// Feeds output to the terminal. Whatever a program prints is untrusted: should the parser
/// ever panic on it, the session keeps running with a fresh terminal rather than dying.
fn feed(term: &mut Term, bytes: &[u8], rows: u16, cols: u16, lines: usize) {
    if catch_unwind(AssertUnwindSafe(|| term.process(bytes))).is_err() {
        *term = new_term(rows, cols, lines);
    }
}

struct State {
    rows: u16,
    cols: u16,
    readers: Vec<Reader>,
    exited: Option<ExitStatus>,
    unparsed: VecDeque<Unparsed>,
    unparsed_bytes: usize,
    /// Output bytes ever queued: whether output came meanwhile.
    queued_total: u64,
    /// Output was dropped unparsed: the parser restarts before its next item.
    restart: bool,
    /// The terminal's scrollback: with a screen, the lines a restarted terminal is fed.
    scrollback_lines: usize,
    /// No more output will come: the parser ends once the queue is empty.
    ended: bool,
}

impl State {
    fn queue(&mut self, item: Unparsed) {
        if let Unparsed::Output(b) = &item {
            self.unparsed_bytes += b.len();
            self.queued_total += b.len() as u64;
        }
        self.unparsed.push_back(item);
        // The parser is too far behind: the oldest output goes unparsed.
        let mut size = None;
        while self.unparsed_bytes > MAX_UNPARSED && self.drop_oldest(&mut size) {
            self.restart = true;
        }
        self.keep_size(size);
    }

    /// Drops the oldest item unparsed, remembering it in `size` if it is a size change;
    /// false when nothing is queued.
    fn drop_oldest(&mut self, size: &mut Option<Unparsed>) -> bool {
        match self.unparsed.pop_front() {
            Some(Unparsed::Output(b)) => self.unparsed_bytes -= b.len(),
            Some(resize) => *size = Some(resize),
            None => return false,
        }
        true
    }

    /// The last size change dropped stays in force for the fresh terminal.
    fn keep_size(&mut self, size: Option<Unparsed>) {
        if let Some(resize) = size {
            self.unparsed.push_front(resize);
        }
    }

    /// Output, parsed at once if it is short and the parser idle (nothing queued, the
    /// terminal free), else queued: whether it was queued. In order either way: the caller
    /// holds the state, and the parser parses an item it took before it frees the terminal.
    fn parse_or_queue(&mut self, parsed: &Mutex<Parsed>, out: &[u8]) -> bool {
        if out.len() <= PARSE_INLINE && self.unparsed.is_empty() {
            if let Ok(mut parsed) = parsed.try_lock() {
                self.queued_total += out.len() as u64;
                parsed.apply(Unparsed::Output(out.to_vec()));
                return false;
            }
        }
        self.queue(Unparsed::Output(out.to_vec()));
        true
    }

    /// The parser is so far behind that the output is a flood (and more may come).
    fn flooded(&self) -> bool {
        self.unparsed_bytes > FLOOD_BEHIND && !self.ended
    }

    /// The next item for the parser, and whether to restart the terminal before it.
    fn pop(&mut self) -> Option<(Unparsed, bool)> {
        if self.restart {
            self.keep_last_lines();
        }
        let item = self.unparsed.pop_front()?;
        if let Unparsed::Output(b) = &item {
            self.unparsed_bytes -= b.len();
        }
        Some((item, std::mem::take(&mut self.restart)))
    }

    /// Before a restart: drops the queued output ahead of its last lines, as many as the
    /// scrollback and the screen hold. A fresh terminal fed only those has the same screen
    /// and scrollback (the rest would scroll out of both), so a flood of short lines costs a
    /// restart a few KiB of parsing, not [`MAX_UNPARSED`]. The last size change among what
    /// goes stays in force.
    fn keep_last_lines(&mut self) {
        let keep = self.scrollback_lines + usize::from(self.rows);
        let mut seen = 0;
        let mut cut = None;
        'scan: for (i, item) in self.unparsed.iter().enumerate().rev() {
            let Unparsed::Output(b) = item else { continue };
            let mut end = b.len();
            while let Some(p) = b[..end].iter().rposition(|&c| c == b'\n') {
                seen += 1;
                if seen > keep {
                    cut = Some((i, p + 1));
                    break 'scan;
                }
                end = p;
            }
        }
        let Some((items, bytes)) = cut else { return };
        let mut size = None;
        for _ in 0..items {
            self.drop_oldest(&mut size);
        }
        if let Some(Unparsed::Output(b)) = self.unparsed.front_mut() {
            b.drain(..bytes);
            self.unparsed_bytes -= bytes;
        }
        self.keep_size(size);
    }
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
    pub fn open(&self, spec: &PtySpec, cfg: &ServerConfig) -> Result<PtyInfo, Refusal> {
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
        let (master, child, argv) = spawn(spec, cfg)?;
        let reader = File::from(master.try_clone().map_err(|e| Refusal::io("dup of the pty", &e))?);
        let lines = spec.scrollback_lines.unwrap_or(DEFAULT_SCROLLBACK_LINES);
        let session = Arc::new(Session {
            id: id.clone(),
            pid: child.id(),
            argv,
            user: spec.user.clone(),
            created_unix_ms: hearth_proto::unix_ms_now(),
            input: Mutex::new(File::from(master)),
            state: Mutex::new(State {
                rows: spec.rows,
                cols: spec.cols,
                readers: Vec::new(),
                exited: None,
                unparsed: VecDeque::new(),
                unparsed_bytes: 0,
                queued_total: 0,
                restart: false,
                scrollback_lines: lines,
                ended: false,
            }),
            queued: Condvar::new(),
            parsed: Mutex::new(Parsed { term: new_term(spec.rows, spec.cols, lines), scrollback_lines: lines, rows: spec.rows, cols: spec.cols }),
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

    /// Streams a session over `conn` until the client detaches, lags or the command ends.
    pub(crate) fn attach<C: Conn>(&self, mut conn: C, id: &str, scrollback_lines: Option<usize>, read_only: bool) -> Result<(), Refusal> {
        let session = match self.get(id) {
            Ok(s) => s,
            Err(e) => return refuse(&mut conn, e),
        };
        let fd = conn.as_fd().try_clone_to_owned()?;
        // Busy until the replay is sent: live output waits in it meanwhile.
        let out = Arc::new(Outlet::new(fd, MAX_QUEUED_BYTES));
        let reader_id = session.next_reader();
        // The replay is taken and the reader registered under the lock that orders output,
        // so the live stream starts exactly where the replay ends; it is sent after the lock
        // is released (output meanwhile waits in the reader's queue), so a slow client
        // never holds the session up.
        let (head, scrollback, screen, exited) = {
            let mut st = session.state.lock().expect("no panics while held");
            let mut parsed = session.parsed.lock().expect("no panics while held");
            // What the parser has not seen yet is parsed now: the replay ends where the live
            // stream starts.
            parsed.catch_up(&mut st);
            let scrollback = scrollback_bytes(&mut parsed.term, scrollback_lines);
            let screen = parsed.term.screen().state_formatted().into_bytes();
            if st.exited.is_none() {
                st.readers.push(Reader { id: reader_id, out: out.clone() });
            }
            let head = Event::PtyAttached { info: session.info_locked(&st, &parsed), scrollback_bytes: scrollback.len() as u64, screen_bytes: screen.len() as u64 };
            (head, scrollback, screen, st.exited)
        };
        conn.set_write_timeout_conn(Some(STALLED_WRITE))?;
        let sent = send(&mut conn, &head).and_then(|()| send_chunks(&mut conn, TAG_SCROLLBACK, &scrollback)).and_then(|()| send_chunks(&mut conn, TAG_SCREEN, &screen));
        if let Err(e) = sent {
            session.detach(reader_id);
            return Err(e);
        }
        if let Some(status) = exited {
            let _ = send(&mut conn, &Event::PtyExited { status });
            conn.shutdown_conn();
            return Ok(());
        }
        let input = conn.try_clone_conn()?;
        let typing = {
            let session = session.clone();
            std::thread::spawn(move || session.take_input(input, reader_id, read_only))
        };
        out.done_writing();
        let result = loop {
            let written = match out.next() {
                Some(Out::Data(bytes)) => write_frame(&mut conn, TAG_PTY, &bytes).map_err(Refusal::from),
                Some(Out::Wire(rest)) => conn.write_all(&rest).and_then(|()| conn.flush()).map_err(Refusal::from),
                Some(Out::Resized(rows, cols)) => send(&mut conn, &Event::PtyResized { rows, cols }),
                Some(Out::Exited(status)) => break send(&mut conn, &Event::PtyExited { status }),
                // Closed by the session: too slow, or the client went away (detach).
                None => {
                    if out.lagged() {
                        let _ = send(&mut conn, &Event::PtyLagged);
                    }
                    break Ok(());
                }
            };
            if let Err(e) = written {
                break Err(e);
            }
        };
        out.close();
        session.detach(reader_id);
        conn.shutdown_conn();
        let _ = typing.join();
        result
    }
}

/// Sends `bytes` as frames of at most [`DATA_CHUNK`].
fn send_chunks<C: Conn>(conn: &mut C, tag: u8, bytes: &[u8]) -> Result<(), Refusal> {
    bytes.chunks(DATA_CHUNK).try_for_each(|c| write_frame(conn, tag, c).map_err(Refusal::from))
}

fn no_session(id: &str) -> Refusal {
    Refusal::not_found(format!("no pty session `{id}`"))
}

/// The last `lines` (default: all) lines of scrollback, formatted, each ended by CRLF.
fn scrollback_bytes(term: &mut Term, lines: Option<usize>) -> Vec<u8> {
    let screen = term.screen_mut();
    let total = screen.scrollback_len();
    let want = lines.unwrap_or(total).min(total);
    let (rows, cols) = screen.size();
    let (rows, cols) = (rows.get(), cols.get());
    let mut out = Vec::new();
    // With the view scrolled back by `offset`, its first rows are scrollback lines
    // total-offset.. ; walk the view down a screen at a time.
    let mut offset = want;
    while offset > 0 {
        screen.set_scrollback(offset);
        let take = offset.min(rows as usize);
        for row in screen.rows_formatted(0, cols).take(take) {
            out.extend_from_slice(row.as_bytes());
            out.extend_from_slice(b"\x1b[m\r\n");
        }
        offset -= take;
    }
    screen.set_scrollback(0);
    out
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

    /// The session's parser thread: queued output into the terminal, until the session ended
    /// and the queue is empty. It takes the terminal before it lets go of the queue, so an
    /// attach (which takes both) never sees an item that left the queue and is not parsed.
    fn parse(self: Arc<Self>) {
        // `queued_total` when the output last paused in a flood: the rest is parsed then.
        let mut paused_at = None;
        loop {
            let mut st = self.state.lock().expect("no panics while held");
            while st.unparsed.is_empty() && !st.ended {
                st = self.queued.wait(st).expect("no panics while held");
            }
            // A flood: all but its last MAX_UNPARSED is dropped unparsed anyway, so wait for
            // it to pause (the session to end, an attach to catch up) and parse the rest then.
            while st.flooded() && paused_at != Some(st.queued_total) {
                let seen = st.queued_total;
                drop(st);
                std::thread::sleep(FLOOD_PAUSE);
                st = self.state.lock().expect("no panics while held");
                if st.queued_total == seen {
                    paused_at = Some(seen);
                }
            }
            let Some(next) = st.pop() else { return };
            let mut parsed = self.parsed.lock().expect("no panics while held");
            drop(st);
            parsed.take(next);
        }
    }

    /// The session's reader thread: PTY output out to every reader and to the parser.
    fn drain(self: Arc<Self>, mut pty: File, mut child: Child) {
        let mut buf = vec![0u8; GATHER_MAX];
        loop {
            // EIO once the last process holding the terminal is gone.
            let n = match pty.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let n = if n >= GATHER_FROM { gather(&mut pty, &mut buf, n) } else { n };
            let mut st = self.state.lock().expect("no panics while held");
            // Readers first, the parser after: an echo is on its way before the parser is
            // woken (in a guest, waking a thread on another vCPU costs an exit).
            // A reader dropped here (lagged, or its connection failed) ends its stream
            // once its writer wrote what it has.
            st.readers.retain(|r| r.out.output(&buf[..n]));
            self.parse_or_queue(&mut st, &buf[..n]);
        }
        let status = match child.wait() {
            Ok(s) => ExitStatus { code: s.code(), signal: s.signal() },
            Err(_) => ExitStatus { code: None, signal: None },
        };
        let mut st = self.state.lock().expect("no panics while held");
        st.exited = Some(status);
        st.ended = true;
        self.queued.notify_one();
        for r in st.readers.drain(..) {
            r.out.push(Out::Exited(status));
            r.out.close();
        }
    }

    /// An attachment's incoming side: keystrokes and resizes until the client goes away.
    fn take_input<C: Conn>(&self, mut conn: C, reader: u64, read_only: bool) {
        loop {
            match read_frame(&mut conn) {
                Ok(Some(f)) if f.tag == TAG_PTY => {
                    if read_only {
                        continue;
                    }
                    if self.input.lock().expect("no panics while held").write_all(&f.payload).is_err() {
                        break;
                    }
                }
                Ok(Some(f)) if f.tag == TAG_CONTROL => match serde_json::from_slice(&f.payload) {
                    Ok(Request::PtyResize { id, rows, cols }) if id == self.id && !read_only => {
                        let _ = self.resize(rows, cols);
                    }
                    _ => {} // nothing else is meaningful on a stream; ignored rather than fatal
                },
                _ => break,
            }
        }
        // Detached: dropping the reader ends the writer side's queue.
        self.detach(reader);
        conn.shutdown_conn();
    }
}

/// Output streaming in (a read of at least [`GATHER_FROM`] bytes): reads on while more comes
/// within [`GATHER_GAP`], up to a full `buf` or [`GATHER_FOR`], and returns how much `buf`
/// holds. A flood then leaves in writes of tens of KiB, not of the PTY's few KiB: each write
/// is a vsock packet, a device notification in the guest and a wake-up of everything on the
/// host side. The PTY's buffer is small, so it is read all along (the writer never waits on
/// a full one). The end of the stream is left for the next read to find.
fn gather(pty: &mut File, buf: &mut [u8], mut len: usize) -> usize {
    let started = std::time::Instant::now();
    while len < buf.len() && started.elapsed() < GATHER_FOR {
        let mut fds = [PollFd::new(pty.as_fd(), PollFlags::POLLIN)];
        if !matches!(poll(&mut fds, GATHER_GAP), Ok(1..)) {
            break;
        }
        match pty.read(&mut buf[len..]) {
            Ok(n @ 1..) => len += n,
            _ => break,
        }
    }
    len
}

/// Opens a PTY and starts the session's command on it, as its controlling terminal.
fn spawn(spec: &PtySpec, cfg: &ServerConfig) -> Result<(OwnedFd, Child, Vec<String>), Refusal> {
    let account = match &spec.user {
        Some(name) => Some(user::lookup(name)?),
        None => None,
    };
    let argv = if spec.argv.is_empty() {
        let shell = account.as_ref().map(|a| a.shell.clone()).filter(|s| !s.is_empty()).unwrap_or_else(|| "/bin/sh".into());
        vec![shell, "-l".into()]
    } else {
        spec.argv.clone()
    };
    let (master, slave) = open_pty(spec.rows, spec.cols).map_err(|e| Refusal::io("opening a pty", &e))?;
    let stdio = || slave.try_clone().map(Stdio::from).map_err(|e| Refusal::io("dup of the pty", &e));
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).env_clear().envs(cfg.env.iter().cloned()).env("TERM", "xterm-256color").stdin(stdio()?).stdout(stdio()?).stderr(stdio()?);
    // SAFETY: in the forked child before exec: default signal actions, a new session whose
    // controlling terminal is the PTY on fd 0. sigaction, setsid and ioctl are
    // async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            crate::user::default_signal_actions();
            nix::unistd::setsid()?;
            if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    if let Some(account) = &account {
        user::apply(&mut cmd, account)?;
    }
    cmd.envs(spec.env.iter().cloned());
    if let Some(dir) = &spec.cwd {
        cmd.current_dir(dir);
    }
    // Whatever the cause (a missing binary too), the command was tried and could not run.
    let child = cmd.spawn().map_err(|e| Refusal::failed(format!("cannot run {}: {e}", argv[0])))?;
    Ok((master, child, argv))
}

/// A PTY pair, both ends close-on-exec so no other command inherits them (an inherited slave
/// would keep a session from ever seeing its end).
fn open_pty(rows: u16, cols: u16) -> std::io::Result<(OwnedFd, OwnedFd)> {
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
    nix::pty::grantpt(&master)?;
    nix::pty::unlockpt(&master)?;
    let name = nix::pty::ptsname_r(&master)?;
    let path = CString::new(name).map_err(std::io::Error::other)?;
    let slave = nix::fcntl::open(path.as_c_str(), OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())?;
    // SAFETY: `open` just returned this descriptor and nothing else owns it.
    let slave = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(slave) };
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the descriptor leaves the PtyMaster, which no longer owns it.
    let master = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(master)) };
    Ok((master, slave))
}

/// `pty_*` requests other than attach, answered with one event.
pub(crate) fn handle(sessions: &Sessions, cfg: &ServerConfig, req: Request) -> Event {
    let ok = |r: Result<(), Refusal>| r.map_or_else(|r| r.event(), |()| Event::Ok);
    match req {
        Request::PtyOpen(spec) => sessions.open(&spec, cfg).map_or_else(|r| r.event(), |info| Event::PtyOpened { info }),
        Request::PtyList => Event::PtyList { sessions: sessions.list() },
        Request::PtyResize { id, rows, cols } => ok(sessions.resize(&id, rows, cols)),
        Request::PtySignal { id, signal } => ok(sessions.signal(&id, signal)),
        Request::PtyClose { id } => ok(sessions.close(&id)),
        other => Refusal::invalid(format!("not a pty request: {other:?}")).event(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State {
            rows: 24,
            cols: 80,
            readers: Vec::new(),
            exited: None,
            unparsed: VecDeque::new(),
            unparsed_bytes: 0,
            queued_total: 0,
            restart: false,
            scrollback_lines: 100,
            ended: false,
        }
    }

    #[test]
    fn a_parser_far_enough_behind_is_in_a_flood_until_the_session_ends() {
        let mut st = state();
        st.queue(Unparsed::Output(vec![b'x'; FLOOD_BEHIND]));
        assert!(!st.flooded(), "at the mark it still parses");
        st.queue(Unparsed::Output(b"y".to_vec()));
        assert!(st.flooded());
        assert_eq!(st.queued_total, FLOOD_BEHIND as u64 + 1);
        st.pop();
        assert!(!st.flooded(), "parsed back under the mark");
        st.queue(Unparsed::Output(vec![b'z'; FLOOD_BEHIND]));
        st.ended = true;
        assert!(!st.flooded(), "no more output will come: parse the rest now");
    }

    #[test]
    fn streaming_output_is_gathered_into_one_buffer_up_to_its_size() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let (mut r, mut w) = (File::from(r), File::from(w));
        let mut buf = vec![0u8; 4000];
        w.write_all(&[b'a'; 1500]).unwrap();
        let n = r.read(&mut buf).unwrap();
        // More came meanwhile (and a last byte after the buffer is full).
        w.write_all(&[b'b'; 2000]).unwrap();
        w.write_all(&[b'c'; 501]).unwrap();
        assert_eq!(gather(&mut r, &mut buf, n), 4000, "gathered until the buffer was full");
        assert_eq!(&buf[3500..], &[b'c'; 500][..]);
        // The rest is for the next read; a pause ends a gathering, the end of the stream too.
        let n = r.read(&mut buf).unwrap();
        assert_eq!(gather(&mut r, &mut buf, n), 1, "nothing more came");
        drop(w);
        assert_eq!(gather(&mut r, &mut buf, 1), 1, "the writer is gone");
    }

    #[test]
    fn short_output_is_parsed_at_once_unless_the_parser_is_busy_or_behind() {
        let mut st = state();
        let parsed = Mutex::new(Parsed { term: new_term(24, 80, 100), scrollback_lines: 100, rows: 24, cols: 80 });
        assert!(!st.parse_or_queue(&parsed, b"a"), "an echo: parsed at once");
        assert!(st.unparsed.is_empty());
        assert!(st.parse_or_queue(&parsed, &[b'x'; PARSE_INLINE + 1]), "long output goes to the parser");
        assert!(st.parse_or_queue(&parsed, b"b"), "behind it, in order");
        parsed.lock().unwrap().catch_up(&mut st);
        {
            let _busy = parsed.lock().unwrap();
            assert!(st.parse_or_queue(&parsed, b"c"), "the parser holds the terminal: queued");
        }
        parsed.lock().unwrap().catch_up(&mut st);
        let screen = parsed.lock().unwrap().term.screen().contents();
        assert_eq!(screen.replace('\n', ""), format!("a{}bc", "x".repeat(PARSE_INLINE + 1)), "all of it, in order");
        assert_eq!(st.queued_total, PARSE_INLINE as u64 + 4);
    }

    #[test]
    fn a_parser_that_keeps_up_sees_everything_in_order() {
        let mut st = state();
        let mut parsed = Parsed { term: new_term(24, 80, 100), scrollback_lines: 100, rows: 24, cols: 80 };
        st.queue(Unparsed::Output(b"one\r\n".to_vec()));
        st.queue(Unparsed::Resize(10, 40));
        st.queue(Unparsed::Output(b"two".to_vec()));
        assert_eq!(st.unparsed_bytes, 8);
        parsed.catch_up(&mut st);
        assert_eq!((st.unparsed_bytes, parsed.rows, parsed.cols), (0, 10, 40));
        assert_eq!(parsed.term.screen().size(), (NonZeroU16::new(10).unwrap(), NonZeroU16::new(40).unwrap()));
        assert_eq!(parsed.term.screen().contents(), "one\ntwo");
    }

    #[test]
    fn a_parser_far_behind_restarts_from_the_newest_output_at_the_newest_size() {
        let mut st = state();
        let mut parsed = Parsed { term: new_term(24, 80, 100), scrollback_lines: 100, rows: 24, cols: 80 };
        parsed.apply(Unparsed::Output(b"old screen".to_vec()));
        st.queue(Unparsed::Resize(12, 60));
        let line = |i: usize| format!("{i:07}\r\n").into_bytes();
        let chunk = |from: usize| (from..from + 1000).flat_map(line).collect::<Vec<u8>>();
        let total = MAX_UNPARSED / 9000 + 50;
        for c in 0..total {
            st.queue(Unparsed::Output(chunk(c * 1000)));
            assert!(st.unparsed_bytes <= MAX_UNPARSED, "the queue is bounded");
        }
        assert!(st.restart, "output was dropped");
        assert!(matches!(st.unparsed.front(), Some(Unparsed::Resize(12, 60))), "the size in force is kept");
        let (first, restart) = st.pop().unwrap();
        assert!(restart && matches!(first, Unparsed::Resize(12, 60)), "the size in force is kept");
        // What is left to parse is the lines a fresh terminal holds: scrollback and a screen.
        assert!(st.unparsed_bytes <= (100 + 24) * 9, "{} bytes left to parse", st.unparsed_bytes);
        parsed.take((first, restart));
        parsed.catch_up(&mut st);
        let screen = parsed.term.screen().contents();
        assert!(!screen.contains("old screen"), "the terminal restarted");
        assert_eq!((parsed.rows, parsed.cols), (12, 60));
        // The screen ends with the newest lines, as a reader that saw everything has it, and
        // the scrollback is full with the lines before them.
        let newest = total * 1000 - 1;
        assert!(screen.ends_with(&format!("{newest:07}")), "{screen}");
        let history = String::from_utf8(scrollback_bytes(&mut parsed.term, None)).unwrap();
        let numbers: Vec<usize> = history.lines().filter_map(|l| l.trim_end_matches("\x1b[m").trim().parse().ok()).collect();
        let on_screen: Vec<usize> = screen.lines().filter_map(|l| l.trim().parse().ok()).collect();
        assert_eq!(numbers.len(), 100, "{history:?}");
        assert_eq!(numbers.last().map(|n| n + 1), on_screen.first().copied());
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1));
    }
}
