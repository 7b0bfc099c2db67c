//! A session's output by byte offset, for clients that poll rather than attach (`pty_read`):
//! the newest [`PTY_LOG_BYTES`] of everything the session wrote, each byte at the offset it
//! had in the whole stream, so a reader that keeps its offset gets every byte once, and one
//! that fell further behind than the log holds is told how much it missed.

use std::collections::VecDeque;

use hearth_proto::control::PTY_LOG_BYTES;

pub(super) struct OutputLog {
    kept: VecDeque<u8>,
    /// Bytes ever written: the offset the next one gets.
    total: u64,
    cap: usize,
}

impl Default for OutputLog {
    fn default() -> Self {
        Self::with_cap(PTY_LOG_BYTES)
    }
}

impl OutputLog {
    fn with_cap(cap: usize) -> Self {
        // Grown as output comes: an idle terminal keeps a few bytes, not the cap.
        Self { kept: VecDeque::new(), total: 0, cap }
    }

    pub(super) fn push(&mut self, out: &[u8]) {
        self.total += out.len() as u64;
        let out = &out[out.len().saturating_sub(self.cap)..];
        let over = (self.kept.len() + out.len()).saturating_sub(self.cap);
        self.kept.drain(..over);
        self.kept.extend(out);
    }

    /// The offset of the oldest byte kept.
    fn start(&self) -> u64 {
        self.total - self.kept.len() as u64
    }

    pub(super) fn end(&self) -> u64 {
        self.total
    }

    /// At most `max` bytes from offset `after` (or the oldest kept, if that is later), and
    /// the offset they start at. An offset past the end reads nothing, from the end.
    pub(super) fn read(&self, after: u64, max: usize) -> (u64, Vec<u8>) {
        let from = after.clamp(self.start(), self.total);
        let skip = (from - self.start()) as usize;
        let n = max.min(self.kept.len() - skip);
        (from, self.kept.range(skip..skip + n).copied().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_that_keeps_its_offset_gets_every_byte_once() {
        let mut log = OutputLog::with_cap(8);
        log.push(b"abc");
        assert_eq!(log.read(0, 2), (0, b"ab".to_vec()));
        assert_eq!(log.read(2, 100), (2, b"c".to_vec()));
        assert_eq!(log.read(3, 100), (3, Vec::new()), "nothing new");
        log.push(b"defgh");
        assert_eq!(log.read(3, 100), (3, b"defgh".to_vec()));
        assert_eq!(log.end(), 8);
    }

    #[test]
    fn a_reader_too_far_behind_starts_at_the_oldest_byte_kept() {
        let mut log = OutputLog::with_cap(4);
        log.push(b"abcdef");
        assert_eq!(log.read(0, 100), (2, b"cdef".to_vec()), "a and b are gone");
        log.push(b"0123456789");
        assert_eq!((log.read(3, 2), log.end()), ((12, b"67".to_vec()), 16));
        assert_eq!(log.read(99, 10), (16, Vec::new()), "an offset from the future reads from the end");
    }
}
