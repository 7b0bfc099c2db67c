//! A terminal attachment's outgoing side: the bounded queue between a session's PTY reader
//! and the attachment's writer thread, and the short cut past it.
//!
//! When nothing is queued and the writer is idle, the PTY reader writes output to the
//! connection itself, without blocking: an echo then leaves without a thread being woken (in
//! a guest a wake-up on another vCPU costs an exit to the host, about a tenth of the echo in
//! the box). Whatever the connection does not take at once is queued, in order, for the
//! writer, which writes it blocking (up to its connection's write timeout). This module owns
//! that ordering and the bound; it does not know frames beyond writing output ones.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Condvar, Mutex};

use hearth_proto::control::{ExitStatus, DATA_CHUNK, TAG_PTY};
use nix::errno::Errno;
use nix::sys::socket::{send, MsgFlags};

/// What the writer is handed, in output order.
#[derive(Debug, PartialEq)]
pub(crate) enum Out {
    /// Output not yet framed (queued ones are joined up to [`DATA_CHUNK`]).
    Data(Vec<u8>),
    /// The rest of an output frame the PTY reader began writing itself.
    Wire(Vec<u8>),
    Resized(u16, u16),
    Exited(ExitStatus),
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Out>,
    /// Output bytes in `items`.
    bytes: usize,
    /// The writer is writing what it took: nobody else may write meanwhile.
    writing: bool,
    /// The writer waits for an item.
    waiting: bool,
    /// Nothing more is queued: the writer ends once `items` is empty.
    closed: bool,
    /// Closed because it fell too far behind.
    lagged: bool,
}

pub(crate) struct Outlet {
    q: Mutex<Queue>,
    wake: Condvar,
    /// The connection, for writes that must not block.
    fd: OwnedFd,
    /// Output queued beyond this drops the attachment as lagging.
    max_queued: usize,
}

impl Outlet {
    /// An outlet on `fd` (a copy of the connection's descriptor), busy until
    /// [`Outlet::done_writing`]: the attachment's replay goes first, live output waits.
    pub(crate) fn new(fd: OwnedFd, max_queued: usize) -> Self {
        Self { q: Mutex::new(Queue { writing: true, ..Queue::default() }), wake: Condvar::new(), fd, max_queued }
    }

    /// Output for this attachment: written now if nothing is ahead of it and the connection
    /// takes it, else queued. False once the attachment is to be dropped (it lagged beyond
    /// the bound, or its connection failed, or it was closed).
    pub(crate) fn output(&self, data: &[u8]) -> bool {
        let mut q = self.q.lock().expect("no panics while held");
        if q.closed {
            return false;
        }
        if q.items.is_empty() && !q.writing {
            let Ok(mut wire) = hearth_proto::frame::encode(TAG_PTY, data) else { return false };
            let rest = match send(self.fd.as_raw_fd(), &wire, MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL) {
                Ok(n) if n == wire.len() => return true,
                Ok(n) => {
                    wire.drain(..n);
                    wire
                }
                // The peer is gone: so is the attachment.
                Err(Errno::EPIPE | Errno::ECONNRESET | Errno::ENOTCONN) => {
                    q.closed = true;
                    self.notify(&q);
                    return false;
                }
                // Full (EAGAIN) or anything else: the writer's blocking write decides.
                Err(_) => wire,
            };
            q.bytes += rest.len();
            q.items.push_back(Out::Wire(rest));
            self.notify(&q);
            return true;
        }
        if q.bytes + data.len() > self.max_queued {
            q.lagged = true;
            q.closed = true;
            self.notify(&q);
            return false;
        }
        q.bytes += data.len();
        q.items.push_back(Out::Data(data.to_vec()));
        self.notify(&q);
        true
    }

    /// Queues a size change or the end (never written by the caller: they are rare).
    pub(crate) fn push(&self, item: Out) {
        let mut q = self.q.lock().expect("no panics while held");
        if !q.closed {
            q.items.push_back(item);
            self.notify(&q);
        }
    }

    /// Nothing more is queued; the writer ends after what is.
    pub(crate) fn close(&self) {
        let mut q = self.q.lock().expect("no panics while held");
        q.closed = true;
        self.notify(&q);
    }

    /// The writer's next item (queued output joined up to [`DATA_CHUNK`]), marking it
    /// writing; None once closed and drained. Waits for one.
    pub(crate) fn next(&self) -> Option<Out> {
        let mut q = self.q.lock().expect("no panics while held");
        q.writing = false;
        while q.items.is_empty() && !q.closed {
            q.waiting = true;
            q = self.wake.wait(q).expect("no panics while held");
            q.waiting = false;
        }
        let mut item = q.items.pop_front()?;
        if let Out::Data(bytes) | Out::Wire(bytes) = &item {
            q.bytes -= bytes.len();
        }
        if let Out::Data(bytes) = &mut item {
            while let Some(Out::Data(more)) = q.items.front() {
                if bytes.len() + more.len() > DATA_CHUNK {
                    break;
                }
                bytes.extend_from_slice(more);
                q.bytes -= more.len();
                q.items.pop_front();
            }
        }
        q.writing = true;
        Some(item)
    }

    /// The writer is idle again (the replay is sent, or an item written).
    pub(crate) fn done_writing(&self) {
        self.q.lock().expect("no panics while held").writing = false;
    }

    /// Whether it was closed for lagging.
    pub(crate) fn lagged(&self) -> bool {
        self.q.lock().expect("no panics while held").lagged
    }

    fn notify(&self, q: &Queue) {
        if q.waiting {
            self.wake.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_proto::frame::read_frame;
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    fn outlet(max: usize) -> (Outlet, UnixStream) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        (Outlet::new(OwnedFd::from(ours), max), theirs)
    }

    #[test]
    fn output_waits_for_the_replay_then_goes_straight_out() {
        let (o, mut peer) = outlet(1 << 20);
        assert!(o.output(b"during the replay"));
        assert_eq!(o.next(), Some(Out::Data(b"during the replay".to_vec())), "queued behind the replay");
        o.done_writing();
        assert!(o.output(b"echo"));
        assert_eq!(o.q.lock().unwrap().items.len(), 0, "written, not queued");
        let f = read_frame(&mut peer).unwrap().unwrap();
        assert_eq!((f.tag, f.payload.as_slice()), (TAG_PTY, &b"echo"[..]));
    }

    #[test]
    fn queued_output_is_joined_and_kept_in_order_with_size_changes() {
        let (o, _peer) = outlet(1 << 20);
        for b in [&b"a"[..], b"b"] {
            o.output(b);
        }
        o.push(Out::Resized(3, 4));
        o.output(b"c");
        o.close();
        assert_eq!(o.next(), Some(Out::Data(b"ab".to_vec())));
        assert!(!o.output(b"after close"), "closed: dropped");
        assert_eq!(o.next(), Some(Out::Resized(3, 4)));
        assert_eq!(o.next(), Some(Out::Data(b"c".to_vec())));
        assert_eq!(o.next(), None);
        assert!(!o.lagged());
    }

    #[test]
    fn a_connection_that_takes_nothing_gets_the_rest_queued_then_lags() {
        let (o, mut peer) = outlet(256 << 10);
        o.done_writing();
        // Nobody reads the peer: the socket's buffer fills, then the rest waits in the queue.
        let chunk = vec![b'x'; 4096];
        let mut sent = 0;
        while o.output(&chunk) {
            sent += chunk.len();
            assert!(sent < 64 << 20, "never lagged");
        }
        assert!(o.lagged());
        // Everything the outlet accepted arrives, in order, once the writer writes it out.
        let mut got = Vec::new();
        let reader = std::thread::spawn(move || {
            peer.read_to_end(&mut got).unwrap();
            got
        });
        let mut w = std::fs::File::from(o.fd.try_clone().unwrap());
        while let Some(item) = o.next() {
            match item {
                Out::Wire(b) => std::io::Write::write_all(&mut w, &b).unwrap(),
                Out::Data(b) => hearth_proto::frame::write_frame(&mut w, TAG_PTY, &b).unwrap(),
                other => panic!("{other:?}"),
            }
        }
        drop(w);
        drop(o);
        let got = reader.join().unwrap();
        let mut payload = Vec::new();
        let mut r = &got[..];
        while let Some(f) = read_frame(&mut r).unwrap() {
            payload.extend(f.payload);
        }
        assert_eq!(payload.len(), sent);
        assert!(payload.iter().all(|&b| b == b'x'));
    }
}
