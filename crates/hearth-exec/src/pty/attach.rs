//! Attachments: the PTY reader thread that fans a session's output out to its attachments
//! (and the parser), gathering a flood into large writes; and an attach stream's life (the
//! replay, live output through its [`Outlet`], keystrokes and resizes in, detach).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::process::Child;
use std::sync::Arc;
use std::time::Duration;

use hearth_proto::control::{Event, ExitStatus, Request, DATA_CHUNK, TAG_CONTROL, TAG_PTY, TAG_SCREEN, TAG_SCROLLBACK};
use hearth_proto::frame::{read_frame, write_frame};
use nix::poll::{poll, PollFd, PollFlags};

use super::screen::scrollback_bytes;
use super::{Reader, Session, Sessions};
use crate::conn::Conn;
use crate::outlet::{Out, Outlet};
use crate::refusal::Refusal;
use crate::reply::{refuse, send};

/// Output an attachment may have queued before it is dropped as too slow.
pub const MAX_QUEUED_BYTES: usize = 4 << 20;
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

impl Sessions {
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

impl Session {
    /// The session's reader thread: PTY output out to every reader and to the parser.
    pub(super) fn drain(self: Arc<Self>, mut pty: File, mut child: Child) {
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
            st.log.push(&buf[..n]);
            self.output.notify_all();
        }
        let status = match child.wait() {
            Ok(s) => ExitStatus { code: s.code(), signal: s.signal() },
            Err(_) => ExitStatus { code: None, signal: None },
        };
        let mut st = self.state.lock().expect("no panics while held");
        st.exited = Some(status);
        st.ended = true;
        self.queued.notify_one();
        self.output.notify_all();
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
