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
