//! The errors of this crate.

use std::path::PathBuf;
use std::time::Duration;

use crate::fc_api::FcApiError;

#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    #[error("starting {binary} failed")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Firecracker's API socket {socket} did not accept connections within {timeout:?}; console tail:\n{console_tail}")]
    ApiNotReady { socket: PathBuf, timeout: Duration, console_tail: String },
    #[error(transparent)]
    Api(#[from] FcApiError),
    #[error("{what} failed")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{why}; serial console tail:\n{console_tail}")]
    NotReady { why: NotReady, console_tail: String },
    #[error(transparent)]
    Vsock(#[from] crate::vsock::VsockError),
    #[error("guest agent: {0}")]
    Agent(#[from] hearth_exec::ExecError),
}

/// Why a guest's agent never said it was ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    /// Firecracker ended first (the guest shut down, or the VMM died).
    Exited,
    /// The deadline passed with the VM still running (a hang, or a slow boot).
    TimedOut,
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NotReady::Exited => "Firecracker exited before the agent was ready",
            NotReady::TimedOut => "the agent was not ready in time",
        })
    }
}
