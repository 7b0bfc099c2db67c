//! The box: a Linux VM under QEMU with software emulation (TCG) whose emulated CPU has AMD
//! SVM, so `/dev/kvm` works inside it and the real Firecracker boots our guests there.
//! hearth uses it on hosts whose own KVM cannot run guests (nested clouds, CI).
//!
//! Layout:
//! - [`qemu`]: the QEMU command line (pure: a spec in, arguments out).
//! - [`host`]: the host side: the box directory, start / stop / status, the data disk.
//! - [`client`]: connecting to the box's control server (`hearth box run`).
//! - [`inside`]: what runs in the box: `hearth box init` as PID 1, serving the control
//!   protocol (hearth-exec) on the forwarded port.
//!
//! The same hearth binary runs on both sides: the host shares it into the box over 9p,
//! together with the artifact cache, so rebuilding hearth never rebuilds the box image.
//! This crate does not build artifacts (hearth-image does) or drive Firecracker (hearth-vmm).

pub mod client;
pub mod host;
pub mod inside;
pub mod qemu;

pub use client::BoxClient;
pub use host::{BoxDir, BoxStatus, StartOptions};

/// TCP port of the control server inside the box (forwarded from host loopback).
pub const CONTROL_PORT: u16 = 7070;
/// The box's address on QEMU's user network.
pub const BOX_ADDR: &str = "10.0.2.15/24";
/// QEMU user networking's gateway and resolver as the box sees them: the box's default route
/// (packets go nowhere while QEMU's `restrict=on`) and the resolver a served box hands its
/// workstations.
pub const BOX_GATEWAY: &str = "10.0.2.2";
pub const BOX_DNS: &str = "10.0.2.3";
/// The box's network interface: the uplink of the workstations served from it.
pub const BOX_UPLINK: &str = "eth0";
/// 9p mount tags and where the box mounts them.
pub const SHARE_TAG: &str = "hearth-share";
pub const CACHE_TAG: &str = "hearth-cache";
pub const SHARE_MOUNT: &str = "/run/hearth/share";
pub const CACHE_MOUNT: &str = "/run/hearth/cache";
/// The box's persistent data disk (second virtio disk) and its mount point.
pub const DATA_DEVICE: &str = "/dev/vdb";
pub const DATA_MOUNT: &str = "/run/hearth/data";
/// The readiness line `hearth box init` prints on the box console.
pub const READY_LINE: &str = "hearth-box: ready";

#[derive(Debug, thiserror::Error)]
pub enum BoxError {
    #[error("the box is not running (start it with `hearth box start`)")]
    NotRunning,
    #[error("the box is already running (pid {0})")]
    AlreadyRunning(u32),
    #[error("missing artifact `{0}`: run `hearth image build`")]
    MissingArtifact(String),
    #[error("the box did not become ready within {secs} s; console log tail:\n{tail}")]
    NotReady { secs: u64, tail: String },
    #[error("QEMU exited while the box was starting; QEMU log: {qemu_log}\nconsole log tail:\n{tail}")]
    QemuExited { qemu_log: String, tail: String },
    #[error("box control channel: {0}")]
    Exec(#[from] hearth_exec::ExecError),
    #[error("{what} failed")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl BoxError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { what: what.into(), source }
    }
}
