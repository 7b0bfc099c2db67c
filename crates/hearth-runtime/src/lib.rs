//! Workstations: one Firecracker microVM plus its disks, sockets and files, from creation to
//! deletion, through a library API the server calls.
//!
//! Layout:
//! - [`spec`]: what a workstation is made of (vCPUs, memory, disk, read-only…), validated
//!   against configured limits with the offending field named.
//! - [`layout`]: the per-workstation directory, everything a workstation owns under it.
//! - [`network`]: its network as data the server hands over (netns, tap, address, limits),
//!   persisted beside the spec and turned into the VM's network interface at each start.
//! - [`record`]: its persisted state (stopped, running, paused, crashed, hibernated) and timestamps.
//! - [`workstation`]: the lifecycle: create, start, stop, pause, resume, delete, reconcile.
//! - [`hibernate`]: hibernate to a snapshot in the workstation's directory, and wake.
//!
//! Owns workstation directories under `<data>/workstations/`. It does not decide who may do
//! what (the server does), keep a database (the server does), know where artifacts come
//! from (callers pass paths), or make networks (the server makes them with hearth-net and
//! hands this crate a [`NetSpec`]).

pub mod error;
pub mod hibernate;
pub mod layout;
pub mod network;
pub mod record;
pub mod spec;
pub mod workstation;

pub use error::RuntimeError;
pub use hibernate::{Hibernation, Wake};
pub use network::NetSpec;
pub use record::{Record, State};
pub use spec::{Limits, Spec};
pub use workstation::{Artifacts, Jail, Runtime, Status, Workstation};
