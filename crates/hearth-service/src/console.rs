//! A workstation's serial console (the guest kernel and the agent): the end of its log, and a
//! live follow.
//!
//! The log is a file Firecracker appends to (rotated when a VM starts, see hearth-vmm); a
//! follower polls its length, so it costs nothing between lines and needs no notification
//! from the VM. Followers are counted: each holds a connection and a poll timer.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hearth_proto::api::ConsoleEndReason;

use crate::error::{Error, Unavailable};
use crate::principal::Principal;
use crate::sharing::Level;
use crate::Service;

/// Bytes from the end a caller may ask for: at most, and by default.
pub const MAX_TAIL: u64 = 1 << 20;
pub const DEFAULT_TAIL: u64 = 64 << 10;
/// How often a follower looks for new output.
const POLL: Duration = Duration::from_millis(200);
/// Most bytes in one piece of a follow.
const MAX_PIECE_BYTES: u64 = 16 << 10;

fn tail_bytes(n: Option<u64>) -> Result<u64, Error> {
    let n = n.unwrap_or(DEFAULT_TAIL);
    if n > MAX_TAIL {
        return Err(Error::invalid("tail_bytes", format!("at most {MAX_TAIL}")));
    }
    Ok(n)
}

/// What a follow yields next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleItem {
    /// Text the guest printed.
    Output(String),
    /// The follow is over, and why.
    End(ConsoleEndReason),
}

/// A live follow of a console; holds one of the server's follower permits.
pub struct ConsoleFollow {
    follow: Option<Follow>,
    stopping: tokio::sync::watch::Receiver<bool>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl ConsoleFollow {
    /// The next piece of output, or the end (once; after it, None).
    pub async fn next(&mut self) -> Option<ConsoleItem> {
        loop {
            let mut f = self.follow.take()?;
            // A missing log means the workstation (its directory) is gone.
            if !f.path.exists() {
                return Some(ConsoleItem::End(ConsoleEndReason::Deleted));
            }
            if *self.stopping.borrow_and_update() {
                return Some(ConsoleItem::End(ConsoleEndReason::ServerStopping));
            }
            let (chunk, back) = tokio::task::spawn_blocking(move || (f.read_more(MAX_PIECE_BYTES), f)).await.ok()?;
            self.follow = Some(back);
            if let Some(text) = chunk {
                return Some(ConsoleItem::Output(text));
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = self.stopping.changed() => {}
            }
        }
    }
}

impl Service {
    /// The last `tail_bytes` (default [`DEFAULT_TAIL`], at most [`MAX_TAIL`]) of the log.
    pub async fn console_tail(self: &Arc<Self>, who: &Principal, id: &str, tail_bytes_: Option<u64>) -> Result<String, Error> {
        let n = tail_bytes(tail_bytes_)?;
        let (who, id) = (who.clone(), id.to_string());
        self.run(move |s| {
            s.visible_as(&who, &id, Level::View)?;
            let mut f = Follow::from_end(s.backend.console_log(&id)?, n);
            // One read: a guest printing meanwhile cannot make this answer grow past `n`.
            Ok(f.read_more(n).unwrap_or_default())
        })
        .await
    }

    /// Follows the log: the last `tail_bytes` first, then what the guest prints, until the
    /// workstation is deleted or the server stops. At most `limits.max_console_followers`
    /// at once.
    pub async fn follow_console(self: &Arc<Self>, who: &Principal, id: &str, tail_bytes_: Option<u64>) -> Result<ConsoleFollow, Error> {
        let n = tail_bytes(tail_bytes_)?;
        let permit = self
            .console_followers
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::Unavailable { what: Unavailable::Followers, message: format!("at most {} console followers at once", self.config.limits.max_console_followers) })?;
        let stopping = self.stopping();
        let (who, id) = (who.clone(), id.to_string());
        let path = self.run(move |s| s.visible_as(&who, &id, Level::View).and_then(|_| Ok(s.backend.console_log(&id)?))).await?;
        Ok(ConsoleFollow { follow: Some(Follow::from_end(path, n)), stopping, _permit: permit })
    }
}

/// Reading a growing log from an offset, as text.
struct Follow {
    path: PathBuf,
    offset: u64,
    /// The start of a UTF-8 sequence cut by the end of the last read.
    pending: Vec<u8>,
}

impl Follow {
    /// Positioned `n` bytes before the log's end (its start, if it is shorter).
    fn from_end(path: PathBuf, n: u64) -> Follow {
        let mut f = Follow { path, offset: 0, pending: Vec::new() };
        f.offset = f.len().saturating_sub(n);
        f
    }

    fn len(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    /// Up to `max` new bytes as text; none when there is nothing new. A log that shrank was
    /// rotated: it is read again from its start.
    fn read_more(&mut self, max: u64) -> Option<String> {
        let len = self.len();
        if len < self.offset {
            self.offset = 0;
            self.pending.clear();
        }
        if len == self.offset {
            return None;
        }
        let mut f = std::fs::File::open(&self.path).ok()?;
        f.seek(SeekFrom::Start(self.offset)).ok()?;
        let mut buf = std::mem::take(&mut self.pending);
        let n = f.take(max.min(len - self.offset)).read_to_end(&mut buf).ok()?;
        self.offset += n as u64;
        let text = take_text(&mut buf);
        self.pending = buf;
        (!text.is_empty()).then_some(text)
    }
}

/// Decodes `buf` (invalid bytes replaced), leaving in it only a UTF-8 sequence cut at its end.
fn take_text(buf: &mut Vec<u8>) -> String {
    let rest = buf.split_off(buf.len() - cut_tail(buf));
    let text = String::from_utf8_lossy(buf).into_owned();
    *buf = rest;
    text
}

/// How many bytes at the end of `b` start a UTF-8 character they do not finish: a reader
/// leaves those for its next read, so a character cut by a read's end is not mangled. A
/// byte that can start no character (a stray continuation, 0xF8 and above) is not held back.
pub(crate) fn cut_tail(b: &[u8]) -> usize {
    for back in 1..=b.len().min(3) {
        let c = b[b.len() - back];
        if c & 0xC0 == 0x80 {
            continue; // a continuation byte: look further back for the lead
        }
        let need = match c {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => return 0,
        };
        return if need > back { back } else { 0 };
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_cut_at_the_end_is_left_for_the_next_read() {
        let euro = "€".as_bytes(); // three bytes
        assert_eq!(cut_tail(b"abc"), 0);
        assert_eq!(cut_tail(euro), 0);
        assert_eq!(cut_tail(&euro[..1]), 1);
        assert_eq!(cut_tail(&[b"a", &euro[..2]].concat()), 2);
        assert_eq!(cut_tail("é".as_bytes()), 0);
        assert_eq!(cut_tail(&"😀".as_bytes()[..3]), 3);
        // Not UTF-8 at all: nothing is held back (it is shown replaced).
        assert_eq!(cut_tail(&[0x80, 0x80, 0x80]), 0);
        assert_eq!(cut_tail(&[0xFF]), 0);
    }

    #[test]
    fn text_cut_mid_character_is_completed_by_the_next_read() {
        let bytes = "héllo ✓ done".as_bytes();
        for cut in 0..bytes.len() {
            let mut buf = bytes[..cut].to_vec();
            let mut text = take_text(&mut buf);
            buf.extend_from_slice(&bytes[cut..]);
            text.push_str(&take_text(&mut buf));
            assert_eq!((text.as_str(), buf.len()), ("héllo ✓ done", 0), "cut at {cut}");
        }
        let mut bad = vec![b'a', 0xff, b'b', 0xe2, 0x9c];
        assert_eq!(take_text(&mut bad), "a\u{fffd}b");
        assert_eq!(bad, [0xe2, 0x9c]);
    }

    #[test]
    fn a_follower_sees_appends_and_rotations() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("console.log");
        std::fs::write(&path, "boot\n").unwrap();
        let mut f = Follow { path: path.clone(), offset: 0, pending: Vec::new() };
        assert_eq!(f.read_more(2).as_deref(), Some("bo"));
        assert_eq!(f.read_more(100).as_deref(), Some("ot\n"));
        assert_eq!(f.read_more(100), None);
        std::fs::OpenOptions::new().append(true).open(&path).and_then(|mut w| std::io::Write::write_all(&mut w, b"ready\n")).unwrap();
        assert_eq!(f.read_more(100).as_deref(), Some("ready\n"));
        std::fs::write(&path, "new\n").unwrap();
        assert_eq!(f.read_more(100).as_deref(), Some("new\n"));
    }
}
