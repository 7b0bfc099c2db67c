//! The errors of this crate.

use std::path::PathBuf;
use std::time::Duration;

use crate::api::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    #[error("starting {binary} failed")]
    Spawn { binary: PathBuf, #[source] source: std::io::Error },
    #[error("Firecracker's API socket {socket} did not accept connections within {timeout:?}; console tail:\n{console_tail}")]
    ApiNotReady { socket: PathBuf, timeout: Duration, console_tail: String },
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("{what} failed")]
    Io { what: String, #[source] source: std::io::Error },
    #[error("{why}; serial console tail:\n{console_tail}")]
    NotReady { why: String, console_tail: String },
    #[error(transparent)]
    Vsock(#[from] crate::vsock::VsockError),
    #[error("guest agent: {0}")]
    Agent(#[from] hearth_exec::ExecError),
}
