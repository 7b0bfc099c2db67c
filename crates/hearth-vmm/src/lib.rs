//! Firecracker, and only Firecracker.
//!
//! Layout:
//! - [`api`]: a typed client for Firecracker's HTTP API over its unix socket.
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

pub mod api;
pub mod error;
pub mod jail;
pub mod models;
pub mod probe;
pub mod vm;
pub mod vsock;

pub use api::{ApiClient, ApiError};
pub use error::{NotReady, VmmError};

/// The guest kernel command line. `quiet` because every console byte is an exit to the VMM
/// (expensive in the box); no `i8042.nopnp` so SendCtrlAltDel still reaches the guest.
pub const GUEST_BOOT_ARGS: &str = "console=ttyS0 reboot=k panic=1 pci=off quiet \
    i8042.noaux i8042.nomux i8042.dumbkbd random.trust_cpu=on \
    root=/dev/vda ro rootfstype=ext4 init=/sbin/hearth-agent";

/// The agent's readiness line prefix on the serial console (see hearth-agent).
pub const AGENT_READY_PREFIX: &str = "hearth-agent: ready";
