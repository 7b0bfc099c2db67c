//! Firecracker, and only Firecracker.
//!
//! Layout:
//! - [`fc_api`]: a typed client for Firecracker's HTTP API over its unix socket.
//! - [`models`]: the request bodies we send, with exactly the documented keys
//!   (Firecracker denies unknown fields).
//! - [`error`]: the crate's errors.
//! - [`vm`]: one workstation VM: detached Firecracker, its directory, launch / attach /
//!   stop / kill / pause / resume, overlay disks.
//! - [`jail`]: Firecracker under its jailer: uid/gid, chroot, cgroup v2 limits.
//! - [`vsock`]: reaching a guest's vsock port through Firecracker's unix socket.
//! - [`probe`]: a throwaway boot of the guest kernel + root filesystem to the agent's
//!   readiness line, with timings: the boot check, `hearth doctor`'s KVM probe, and the
//!   boot benchmark all use it.
//!
//! This crate knows nothing about where artifacts come from: callers pass paths.

pub mod error;
pub mod fc_api;
pub mod jail;
pub mod models;
pub mod probe;
pub mod vm;
pub mod vsock;

use std::time::Duration;

pub use error::{NotReady, VmmError};
pub use fc_api::{ApiClient, FcApiError};

/// The guest kernel command line. `quiet` because every console byte is an exit to the VMM
/// (expensive in the box); no `i8042.nopnp` so SendCtrlAltDel still reaches the guest.
pub const GUEST_BOOT_ARGS: &str = "console=ttyS0 reboot=k panic=1 pci=off quiet \
    i8042.noaux i8042.nomux i8042.dumbkbd random.trust_cpu=on \
    root=/dev/vda ro rootfstype=ext4 init=/sbin/hearth-agent";

/// Longest guest halt-polling window [`halt_poll_boot_args`] takes.
pub const MAX_HALT_POLL: Duration = Duration::from_millis(10);

/// Kernel arguments that make an idle guest vCPU poll for up to `window` before it halts
/// (the guest kernel's `haltpoll` idle driver, built in and off without them; the window
/// adapts: it grows while wake-ups come within it and shrinks after longer idles, so an idle
/// guest does not poll). A task woken on a polling vCPU needs no interrupt and no exit to the
/// host. In the box such a wake-up costs 0.7–1.2 ms halted and 0.04 ms polling within a 2 ms
/// window (Linux's 200 us window is too short there), but polling guests there reset
/// themselves far more often; the price anywhere is a vCPU that spins while its wake-ups come
/// less than the window apart (bench/RESULTS.md, `bench/wake.sh`). Zero: none (off). Longer
/// than [`MAX_HALT_POLL`]: that.
pub fn halt_poll_boot_args(window: Duration) -> Vec<String> {
    if window.is_zero() {
        return vec![];
    }
    vec!["cpuidle_haltpoll.force=1".into(), format!("haltpoll.guest_halt_poll_ns={}", window.min(MAX_HALT_POLL).as_nanos())]
}

/// The agent's readiness line prefix on the serial console (see hearth-agent).
pub const AGENT_READY_PREFIX: &str = "hearth-agent: ready";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halt_polling_is_off_at_zero_and_bounded_above() {
        assert!(halt_poll_boot_args(Duration::ZERO).is_empty());
        assert_eq!(halt_poll_boot_args(Duration::from_millis(2)), ["cpuidle_haltpoll.force=1", "haltpoll.guest_halt_poll_ns=2000000"]);
        assert_eq!(halt_poll_boot_args(Duration::from_secs(5))[1], "haltpoll.guest_halt_poll_ns=10000000");
    }
}
