//! Wire types shared by every hearth component.
//!
//! Layout:
//! - [`frame`]: the length-delimited frame codec every hearth byte stream uses
//!   (box control channel today, the guest agent protocol next). Pure: it decodes
//!   from buffers and readers, it never opens a socket.
//! - [`boxctl`]: the messages of the box control channel (`hearth box run`).
//!
//! This crate must not depend on any other hearth crate: everything else depends on it.

pub mod boxctl;
pub mod frame;

pub use frame::{Frame, FrameError, MAX_FRAME_LEN};
