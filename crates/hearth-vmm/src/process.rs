//! Spawning Firecracker and waiting until its API answers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::api::{ApiClient, ApiError};

#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    #[error("starting {binary} failed")]
    Spawn { binary: PathBuf, #[source] source: std::io::Error },
    #[error("Firecracker's API socket {socket} did not accept connections within {timeout:?}")]
    ApiNotReady { socket: PathBuf, timeout: Duration },
    #[error("Firecracker exited before its API came up ({0})")]
    ExitedEarly(ExitStatus),
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

/// A Firecracker process this process started and will reap.
#[derive(Debug)]
pub struct Firecracker {
    child: Child,
    api: ApiClient,
}

/// How long a fresh Firecracker may take to open its API socket.
const API_READY_TIMEOUT: Duration = Duration::from_secs(10);

impl Firecracker {
    /// Starts `binary --api-sock <socket> --id <id>` and waits until the socket accepts
    /// connections. A stale socket file from an earlier run is removed first.
    pub fn spawn(binary: &Path, socket: &Path, id: &str, stdout: Stdio, stderr: Stdio) -> Result<Self, VmmError> {
        match std::fs::remove_file(socket) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(VmmError::Io { what: format!("removing {}", socket.display()), source }),
        }
        let child = Command::new(binary)
            .arg("--api-sock")
            .arg(socket)
            .args(["--id", id])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|source| VmmError::Spawn { binary: binary.to_path_buf(), source })?;
        let mut fc = Firecracker { child, api: ApiClient::new(socket) };
        fc.wait_api()?;
        Ok(fc)
    }

    fn wait_api(&mut self) -> Result<(), VmmError> {
        let deadline = Instant::now() + API_READY_TIMEOUT;
        loop {
            if self.api.is_listening() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(VmmError::ExitedEarly(status));
            }
            if Instant::now() > deadline {
                return Err(VmmError::ApiNotReady { socket: self.api.socket().to_path_buf(), timeout: API_READY_TIMEOUT });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub fn api(&self) -> &ApiClient {
        &self.api
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has ended.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL and reap. Idempotent.
    pub fn kill(&mut self) {
        if self.try_wait().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(self.api.socket());
    }
}

impl Drop for Firecracker {
    fn drop(&mut self) {
        self.kill();
    }
}
