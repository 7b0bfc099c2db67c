//! An attached terminal session's byte stream, without I/O: what a client sends (keystrokes,
//! resizes) encoded into frames, and what it receives decoded into [`PtyEvent`]s from bytes
//! fed in whatever pieces the transport delivers. The blocking [`PtyStream`](crate::PtyStream)
//! and [`PtyInput`](crate::PtyInput) use it, and so does a caller that runs the connection
//! on its own terms (the server's async WebSocket pump).

use hearth_proto::control::{Event, ExitStatus, Request, DATA_CHUNK, TAG_CONTROL, TAG_PTY};
use hearth_proto::frame::Frame;

use crate::client::ExecError;

/// What an attached session says next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PtyEvent {
    Output(Vec<u8>),
    Resized {
        rows: u16,
        cols: u16,
    },
    Exited(ExitStatus),
    /// This reader fell too far behind and was dropped.
    Lagged,
    /// The stream ended (detached, or the server went away).
    Closed,
}

impl PtyEvent {
    /// What one frame of an attached session's stream says.
    pub fn from_frame(f: Frame) -> Result<PtyEvent, ExecError> {
        Ok(match f.tag {
            TAG_PTY => PtyEvent::Output(f.payload),
            TAG_CONTROL => match serde_json::from_slice(&f.payload).map_err(|e| ExecError::Protocol(format!("bad control message: {e}")))? {
                Event::PtyResized { rows, cols } => PtyEvent::Resized { rows, cols },
                Event::PtyExited { status } => PtyEvent::Exited(status),
                Event::PtyLagged => PtyEvent::Lagged,
                Event::Error { kind, message } => return Err(ExecError::Refused { kind, message }),
                other => return Err(ExecError::Protocol(format!("expected a pty event, got {other:?}"))),
            },
            tag => return Err(ExecError::Protocol(format!("unexpected frame tag {tag}"))),
        })
    }
}

/// Turns the server's side of an attach stream into events. Bytes go in as they arrive; an
/// event comes out once its whole frame is in, and a partial frame waits for the rest.
/// After an error the stream is not understood: the caller ends it.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Where the first frame not yet decoded starts in `buf` (decoded ones are dropped
    /// when more bytes come, not one by one).
    start: usize,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes bytes that came from the server.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next event whose frame is whole; None until more bytes come.
    pub fn next_event(&mut self) -> Result<Option<PtyEvent>, ExecError> {
        let Some((frame, n)) = Frame::decode(&self.buf[self.start..])? else { return Ok(None) };
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        PtyEvent::from_frame(frame).map(Some)
    }

    /// Feeds `bytes` and returns every event now whole, in order.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<Vec<PtyEvent>, ExecError> {
        self.feed(bytes);
        let mut events = Vec::new();
        while let Some(ev) = self.next_event()? {
            events.push(ev);
        }
        Ok(events)
    }

    /// Bytes held that are not yet a whole frame (a stream ending with some is cut short).
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }
}

/// The frames that type `bytes` into a session (each at most [`DATA_CHUNK`]).
pub fn keys_bytes(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 5);
    for c in bytes.chunks(DATA_CHUNK) {
        out.extend_from_slice(&Frame::new(TAG_PTY, c).encode().expect("a data chunk fits a frame"));
    }
    out
}

/// The frame that resizes session `id` from its attach stream.
pub fn resize_bytes(id: &str, rows: u16, cols: u16) -> Vec<u8> {
    let req = serde_json::to_vec(&Request::PtyResize { id: id.into(), rows, cols }).expect("requests serialize");
    Frame::new(TAG_CONTROL, req).encode().expect("a resize fits a frame")
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_proto::control::ErrorKind;
    use hearth_proto::frame::read_frame;

    fn frame(tag: u8, payload: &[u8]) -> Vec<u8> {
        Frame::new(tag, payload).encode().unwrap()
    }

    fn event(e: &Event) -> Vec<u8> {
        frame(TAG_CONTROL, &serde_json::to_vec(e).unwrap())
    }

    /// A stream with every kind of event, and the events it says.
    fn wire() -> (Vec<u8>, Vec<PtyEvent>) {
        let exit = ExitStatus { code: Some(3), signal: None };
        let mut w = frame(TAG_PTY, b"hello ");
        w.extend(event(&Event::PtyResized { rows: 30, cols: 90 }));
        w.extend(frame(TAG_PTY, b"world"));
        w.extend(event(&Event::PtyLagged));
        w.extend(event(&Event::PtyExited { status: exit }));
        let events =
            vec![PtyEvent::Output(b"hello ".to_vec()), PtyEvent::Resized { rows: 30, cols: 90 }, PtyEvent::Output(b"world".to_vec()), PtyEvent::Lagged, PtyEvent::Exited(exit)];
        (w, events)
    }

    #[test]
    fn frames_split_at_any_offset_decode_whole_and_in_order() {
        let (w, want) = wire();
        for cut in 0..=w.len() {
            let mut d = Decoder::new();
            let mut got = d.decode(&w[..cut]).unwrap();
            got.extend(d.decode(&w[cut..]).unwrap());
            assert_eq!(got, want, "split at {cut}");
            assert_eq!(d.pending(), 0);
        }
        // One byte at a time: a frame is only taken once it is all there.
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for b in &w {
            got.extend(d.decode(std::slice::from_ref(b)).unwrap());
        }
        assert_eq!(got, want);
        assert_eq!(d.pending(), 0);
        assert_eq!(d.decode(&w[..3]).unwrap(), []);
        assert_eq!(d.pending(), 3, "a partial frame is kept");
    }

    #[test]
    fn garbage_and_refusals_are_errors_not_panics() {
        // A length over the limit: refused before anything is allocated for it.
        let e = Decoder::new().decode(&[0xff, 0xff, 0xff, 0xff, 1]).unwrap_err();
        assert!(matches!(&e, ExecError::Protocol(m) if m.contains("exceeds the limit")), "{e:?}");
        let e = Decoder::new().decode(&frame(9, b"?")).unwrap_err();
        assert!(matches!(&e, ExecError::Protocol(m) if m.contains("tag 9")), "{e:?}");
        let e = Decoder::new().decode(&frame(TAG_CONTROL, b"{not json")).unwrap_err();
        assert!(matches!(e, ExecError::Protocol(_)), "{e:?}");
        let e = Decoder::new().decode(&event(&Event::Ok)).unwrap_err();
        assert!(matches!(e, ExecError::Protocol(_)), "{e:?}");
        let e = Decoder::new().decode(&event(&Event::Error { kind: ErrorKind::NotFound, message: "gone".into() })).unwrap_err();
        assert_eq!(e.kind(), Some(ErrorKind::NotFound));
    }

    #[test]
    fn encoders_frame_keys_in_chunks_and_resizes_as_requests() {
        let keys = vec![b'k'; DATA_CHUNK + 1];
        let wire = keys_bytes(&keys);
        let mut r = &wire[..];
        let (a, b) = (read_frame(&mut r).unwrap().unwrap(), read_frame(&mut r).unwrap().unwrap());
        assert_eq!((a.tag, a.payload.len(), b.tag, b.payload.len()), (TAG_PTY, DATA_CHUNK, TAG_PTY, 1));
        assert!(r.is_empty());
        let f = read_frame(&mut &resize_bytes("t1", 24, 80)[..]).unwrap().unwrap();
        assert_eq!(f.tag, TAG_CONTROL);
        assert_eq!(serde_json::from_slice::<Request>(&f.payload).unwrap(), Request::PtyResize { id: "t1".into(), rows: 24, cols: 80 });
    }
}
