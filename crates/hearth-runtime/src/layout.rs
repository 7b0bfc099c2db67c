//! Where a workstation's things live. Everything it owns is under one directory, so deleting
//! the directory deletes the workstation:
//!
//! ```text
//! <data>/workstations/<id>/
//!   spec.json         what it was created as (written once, atomically)
//!   state.json        its state and timestamps (replaced atomically on every change)
//!   .lock             held while an operation runs: one operation at a time, across processes
//!   network.json      its network (crate::network::NetSpec), when it has one
//!   overlay.ext4      its writable disk (absent for a read-only workstation)
//!   snapshot/         while hibernated: vm.state, vm.mem (crate::hibernate); written as
//!                     snapshot.partial/ and renamed once complete
//!   vm/               the Firecracker side (see hearth_vmm::vm and hearth_vmm::jail):
//!                     firecracker.pid and, jailed, root -> firecracker/<jail>/root (the
//!                     chroot with api.sock, v.sock) while running; console.log and
//!                     firecracker.log kept after
//! ```

use std::path::{Path, PathBuf};

/// The paths of one workstation.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(root: &Path, id: &str) -> Self {
        Self { dir: root.join(id) }
    }

    pub fn spec(&self) -> PathBuf {
        self.dir.join("spec.json")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    pub fn network(&self) -> PathBuf {
        self.dir.join("network.json")
    }

    pub fn overlay(&self) -> PathBuf {
        self.dir.join("overlay.ext4")
    }

    /// A hibernated workstation's complete snapshot.
    pub fn snapshot(&self) -> PathBuf {
        self.dir.join("snapshot")
    }

    /// A snapshot being written.
    pub fn snapshot_partial(&self) -> PathBuf {
        self.dir.join("snapshot.partial")
    }

    pub fn vm(&self) -> PathBuf {
        self.dir.join("vm")
    }

    pub fn console_log(&self) -> PathBuf {
        self.vm().join("console.log")
    }
}

/// Longest workstation id: it names a directory whose socket paths must stay under the
/// kernel's 108-byte limit, and a jail and cgroup (64 bytes with a prefix).
pub const MAX_ID_LEN: usize = 40;

/// A workstation id: 1-40 characters of `[a-z0-9-]`, not starting with `-` (it names a
/// directory, a hostname, a jail and, later, network devices).
pub fn validate_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty() && id.len() <= MAX_ID_LEN && !id.starts_with('-') && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!("must be 1-{MAX_ID_LEN} characters of [a-z0-9-], not starting with `-`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_safe_names() {
        for ok in ["a", "ws-1", &"x".repeat(MAX_ID_LEN)] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "A", "a/b", "..", "a b", &"x".repeat(MAX_ID_LEN + 1)] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }
}
