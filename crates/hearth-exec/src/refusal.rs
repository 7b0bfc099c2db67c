//! The serving side's typed error: a request refused, or tried and failed, with the
//! [`ErrorKind`] the client is told alongside the message. Every fallible step of serving
//! returns one, so the kind is decided where the failure is understood, not guessed later
//! from the message's text.

use std::io;

use hearth_proto::control::{ErrorKind, Event};
use hearth_proto::FrameError;

/// A refusal or failure, as the client hears it (an `error` event).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub kind: ErrorKind,
    pub message: String,
}

impl Refusal {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Failed, message)
    }

    /// `what` failed with `e`: the message is `what: e`, the kind follows the error's
    /// (see [`io_kind`]).
    pub fn io(what: impl std::fmt::Display, e: &io::Error) -> Self {
        Self::new(io_kind(e), format!("{what}: {e}"))
    }

    /// The `error` event that tells the client.
    pub fn event(&self) -> Event {
        Event::Error { kind: self.kind, message: self.message.clone() }
    }
}

/// An I/O error as it stood (its message unchanged), with the kind its cause gives.
impl From<io::Error> for Refusal {
    fn from(e: io::Error) -> Self {
        Self::new(io_kind(&e), e.to_string())
    }
}

/// A frame that could not be read: too long is `too_large`, a stream that ended or failed
/// is `closed`.
impl From<FrameError> for Refusal {
    fn from(e: FrameError) -> Self {
        let kind = match e {
            FrameError::TooLong(_) => ErrorKind::TooLarge,
            FrameError::Empty => ErrorKind::Invalid,
            FrameError::Truncated | FrameError::Io(_) => ErrorKind::Closed,
        };
        Self::new(kind, e.to_string())
    }
}

/// The kind an I/O error's cause gives: missing, not allowed, in the way, or the wrong sort
/// of file are the caller's to act on; anything else failed.
pub fn io_kind(e: &io::Error) -> ErrorKind {
    match e.kind() {
        io::ErrorKind::NotFound => ErrorKind::NotFound,
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => ErrorKind::Denied,
        io::ErrorKind::AlreadyExists => ErrorKind::Exists,
        io::ErrorKind::NotADirectory | io::ErrorKind::IsADirectory | io::ErrorKind::InvalidInput | io::ErrorKind::InvalidFilename => ErrorKind::Invalid,
        io::ErrorKind::FileTooLarge => ErrorKind::TooLarge,
        _ => ErrorKind::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_keep_their_message_and_get_their_kind() {
        let missing = io::Error::from_raw_os_error(libc::ENOENT);
        let r = Refusal::io("cannot read /x", &missing);
        assert_eq!((r.kind, r.message.as_str()), (ErrorKind::NotFound, "cannot read /x: No such file or directory (os error 2)"));
        assert_eq!(Refusal::from(io::Error::from_raw_os_error(libc::EACCES)).kind, ErrorKind::Denied);
        assert_eq!(Refusal::from(io::Error::from_raw_os_error(libc::EIO)).kind, ErrorKind::Failed);
        assert_eq!(Refusal::from(FrameError::TooLong(1 << 30)).kind, ErrorKind::TooLarge);
        assert_eq!(r.event(), Event::Error { kind: ErrorKind::NotFound, message: r.message.clone() });
    }
}
