//! Length-delimited frames: `u32` big-endian length, then a one-byte tag, then the payload.
//!
//! The length counts the tag and the payload, so it is at least 1. Anything longer than
//! [`MAX_FRAME_LEN`] is rejected before a byte of payload is read or buffered: a peer cannot
//! make us allocate more than that, whatever it sends.

use std::io::{self, Read, Write};

/// Largest tag + payload a frame may carry (1 MiB).
pub const MAX_FRAME_LEN: usize = 1 << 20;

/// One frame: a tag saying what the payload is, and the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub tag: u8,
    pub payload: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the limit of {MAX_FRAME_LEN} bytes")]
    TooLong(usize),
    #[error("frame with zero length (a frame carries at least its tag)")]
    Empty,
    #[error("stream ended inside a frame")]
    Truncated,
    #[error("frame i/o failed")]
    Io(#[from] io::Error),
}

impl Frame {
    pub fn new(tag: u8, payload: impl Into<Vec<u8>>) -> Self {
        Self { tag, payload: payload.into() }
    }

    /// Encodes the frame; fails only if the payload is over the limit.
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        encode(self.tag, &self.payload)
    }

    /// Decodes one frame from the front of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` holds only part of a frame (read more and call again),
    /// or the frame and how many bytes of `buf` it used.
    pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
        let Some(header) = buf.get(..4) else { return Ok(None) };
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        check_len(len)?;
        let Some(body) = buf.get(4..4 + len) else { return Ok(None) };
        Ok(Some((Frame { tag: body[0], payload: body[1..].to_vec() }, 4 + len)))
    }
}

fn check_len(len: usize) -> Result<(), FrameError> {
    match len {
        0 => Err(FrameError::Empty),
        n if n > MAX_FRAME_LEN => Err(FrameError::TooLong(n)),
        _ => Ok(()),
    }
}

/// Writes one frame, in one write (header and payload together), and flushes it.
///
/// One write, not three: on a vsock socket each write is a packet of its own, and in the
/// box each packet costs the guest a notification of its device and the host a wake-up.
pub fn write_frame(w: &mut impl Write, tag: u8, payload: &[u8]) -> Result<(), FrameError> {
    w.write_all(&encode(tag, payload)?)?;
    w.flush()?;
    Ok(())
}

/// A frame's bytes on the wire: length, tag, payload.
pub fn encode(tag: u8, payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    let len = payload.len() + 1;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLong(len));
    }
    let mut out = Vec::with_capacity(4 + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.push(tag);
    out.extend_from_slice(payload);
    Ok(out)
}

/// Reads one frame. `Ok(None)` means the stream ended cleanly between frames.
pub fn read_frame(r: &mut impl Read) -> Result<Option<Frame>, FrameError> {
    let mut header = [0u8; 4];
    match read_full(r, &mut header)? {
        0 => return Ok(None),
        4 => {}
        _ => return Err(FrameError::Truncated),
    }
    let len = u32::from_be_bytes(header) as usize;
    check_len(len)?;
    let mut body = vec![0u8; len];
    if read_full(r, &mut body)? != len {
        return Err(FrameError::Truncated);
    }
    let tag = body[0];
    body.remove(0);
    Ok(Some(Frame { tag, payload: body }))
}

/// Reads until `buf` is full or the stream ends; returns how many bytes were read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_buffer_and_reader() {
        let f = Frame::new(7, b"hello".to_vec());
        let bytes = f.encode().unwrap();
        assert_eq!(bytes, [0, 0, 0, 6, 7, b'h', b'e', b'l', b'l', b'o']);
        let (back, used) = Frame::decode(&bytes).unwrap().unwrap();
        assert_eq!((back, used), (f.clone(), bytes.len()));
        assert_eq!(read_frame(&mut &bytes[..]).unwrap(), Some(f));
    }

    /// A socket that records each write it is given.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl Write for Writes {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.push(b.to_vec());
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_frame_goes_out_in_one_write() {
        let mut w = Writes::default();
        write_frame(&mut w, 3, b"echo").unwrap();
        write_frame(&mut w, 4, b"").unwrap();
        assert_eq!(w.0, [Frame::new(3, b"echo".to_vec()).encode().unwrap(), vec![0, 0, 0, 1, 4]]);
    }

    #[test]
    fn partial_input_asks_for_more() {
        let bytes = Frame::new(1, vec![9; 100]).encode().unwrap();
        for cut in 0..bytes.len() {
            assert!(Frame::decode(&bytes[..cut]).unwrap().is_none(), "cut at {cut}");
        }
    }

    #[test]
    fn oversized_length_is_rejected_before_reading_payload() {
        let mut bytes = ((MAX_FRAME_LEN + 1) as u32).to_be_bytes().to_vec();
        bytes.push(1);
        assert!(matches!(Frame::decode(&bytes), Err(FrameError::TooLong(_))));
        assert!(matches!(read_frame(&mut &bytes[..]), Err(FrameError::TooLong(_))));
        let big = Frame::new(1, vec![0; MAX_FRAME_LEN]);
        assert!(matches!(big.encode(), Err(FrameError::TooLong(_))));
        assert!(matches!(write_frame(&mut Vec::new(), 1, &big.payload), Err(FrameError::TooLong(_))));
    }

    #[test]
    fn zero_length_and_truncation_are_errors() {
        assert!(matches!(Frame::decode(&[0, 0, 0, 0]), Err(FrameError::Empty)));
        assert!(matches!(read_frame(&mut &[0u8, 0, 0, 5, 1, 2][..]), Err(FrameError::Truncated)));
        assert!(matches!(read_frame(&mut &[0u8, 0][..]), Err(FrameError::Truncated)));
        assert!(read_frame(&mut &[][..]).unwrap().is_none());
    }

    #[test]
    fn decoder_never_panics_on_arbitrary_bytes() {
        // A cheap deterministic sweep (xorshift) over short random inputs; the real fuzz
        // target comes with the agent protocol.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 24) as usize;
            let buf: Vec<u8> = (0..len).map(|i| (x >> (i % 8 * 8)) as u8).collect();
            let _ = Frame::decode(&buf);
            let _ = read_frame(&mut &buf[..]);
        }
    }
}
