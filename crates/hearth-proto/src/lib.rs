//! Wire types shared by every hearth component.
//!
//! Layout:
//! - [`frame`]: the length-delimited frame codec every hearth byte stream uses
//!   (the box's control channel and the guest agent's). Pure: it decodes
//!   from buffers and readers, it never opens a socket.
//! - [`api`]: the REST API's request and response bodies (server and CLI).
//! - [`control`]: the control protocol spoken by the box and by the guest agent
//!   (hello, exec, health, shutdown).
//!
//! This crate must not depend on any other hearth crate: everything else depends on it.

pub mod api;
pub mod control;
pub mod frame;

pub use frame::{Frame, FrameError, MAX_FRAME_LEN};

/// Now, in the unit every timestamp on the wire uses: milliseconds since the Unix epoch.
pub fn unix_ms_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
