//! The terminal as the parser keeps it: the queue of output (and size changes) it has yet
//! to apply, bounded and dropped from the front when it falls too far behind, and the
//! headless terminal ([`vt100`]) it feeds, whose screen and scrollback an attach replays.
//! Owns the parser thread and what it parses; the session (`super`) owns the locks.

use std::collections::VecDeque;
use std::num::NonZeroU16;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hearth_proto::control::ExitStatus;

use super::log::OutputLog;
use super::{Reader, Session};

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

/// The terminal as far as the parser got.
pub(super) struct Parsed {
    pub(super) term: Term,
    scrollback_lines: usize,
    rows: u16,
    cols: u16,
}

/// What the parser has yet to apply, in output order.
pub(super) enum Unparsed {
    Output(Vec<u8>),
    Resize(u16, u16),
}

impl Parsed {
    /// A blank terminal of this size and scrollback.
    pub(super) fn new(rows: u16, cols: u16, scrollback_lines: usize) -> Self {
        Self { term: new_term(rows, cols, scrollback_lines), scrollback_lines, rows, cols }
    }

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
    pub(super) fn catch_up(&mut self, st: &mut State) {
        while let Some(next) = st.pop() {
            self.take(next);
        }
    }
}

/// The headless terminal: vt100 plus the title it reports through a callback.
pub(super) type Term = vt100::Parser<TermEvents>;

/// What vt100 reports besides the screen.
#[derive(Default)]
pub(super) struct TermEvents {
    pub(super) title: String,
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

pub(super) struct State {
    pub(super) rows: u16,
    pub(super) cols: u16,
    pub(super) readers: Vec<Reader>,
    pub(super) exited: Option<ExitStatus>,
    unparsed: VecDeque<Unparsed>,
    unparsed_bytes: usize,
    /// Output bytes ever queued: whether output came meanwhile.
    queued_total: u64,
    /// Output was dropped unparsed: the parser restarts before its next item.
    restart: bool,
    /// The terminal's scrollback: with a screen, the lines a restarted terminal is fed.
    scrollback_lines: usize,
    /// No more output will come: the parser ends once the queue is empty.
    pub(super) ended: bool,
    /// The output by offset, for `pty_read`.
    pub(super) log: OutputLog,
}

impl State {
    /// A session's state at its start: no readers, nothing queued.
    pub(super) fn new(rows: u16, cols: u16, scrollback_lines: usize) -> Self {
        Self {
            rows,
            cols,
            readers: Vec::new(),
            exited: None,
            unparsed: VecDeque::new(),
            unparsed_bytes: 0,
            queued_total: 0,
            restart: false,
            scrollback_lines,
            ended: false,
            log: OutputLog::default(),
        }
    }

    pub(super) fn queue(&mut self, item: Unparsed) {
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
    pub(super) fn parse_or_queue(&mut self, parsed: &Mutex<Parsed>, out: &[u8]) -> bool {
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

/// The last `lines` (default: all) lines of scrollback, formatted, each ended by CRLF.
pub(super) fn scrollback_bytes(term: &mut Term, lines: Option<usize>) -> Vec<u8> {
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
    /// The session's parser thread: queued output into the terminal, until the session ended
    /// and the queue is empty. It takes the terminal before it lets go of the queue, so an
    /// attach (which takes both) never sees an item that left the queue and is not parsed.
    pub(super) fn parse(self: Arc<Self>) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State::new(24, 80, 100)
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
