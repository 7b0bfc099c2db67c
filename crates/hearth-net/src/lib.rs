//! Workstation networking: routed, one network namespace per workstation, NAT egress
//! filtered by one nftables table. See docs/network.md for the topology and the rules.
//!
//! What this crate owns:
//! - [`alloc`]: pure address allocation — a range cut into /29 slots, slot ↔ addresses,
//!   names derived from a workstation id, the guest's MAC. No I/O.
//! - [`Network::init`]: the `inet hearth` nftables table in the root namespace (masquerade,
//!   forward and input filters, the `nat_ifaces` set), replaced atomically on re-init.
//! - [`Network::setup`] / [`Network::teardown`]: one workstation's netns, veth pair,
//!   addresses, routes, forwarding, persistent `tap0`, nat set element — over netlink
//!   (rtnetlink) and typed nft JSON, never shell strings.
//! - [`Network::list`]: what hearth-owned objects exist, for reconciliation and leak checks.
//! - [`netns`] and [`testnet`]: named namespaces, running code in one, and the fake
//!   "internet" topology tests use.
//!
//! What it must not do: boot or stop VMs (hearth-vmm does, in the netns made here), touch
//! the database (the caller records which slot a workstation holds), or decide policy
//! beyond what it is given (egress mode, allow list, DNS come from the caller's config).
//!
//! "Root namespace" means the namespace of the thread that called [`Network::new`]: the
//! host's in production, a throw-away one in tests. Every namespace switch happens on a
//! short-lived thread of this crate's own; the caller's thread never changes namespace.

pub mod alloc;
mod error;
mod inventory;
pub mod netns;
mod nft;
mod nl;
mod rules;
mod setup;
mod tap;
pub mod testnet;

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

pub use alloc::{AllocError, Range, Slot, WorkstationId};
pub use error::NetError;
pub use inventory::Inventory;
/// Re-exported: it is in this API (allow entries, a slot's networks).
pub use ipnet::Ipv4Net;
pub use rules::{Allow, HostOpts};
pub use setup::{Egress, GuestSide, SetupOpts, WorkstationNet};

use netns as ns;

/// Where named network namespaces live unless configured otherwise (iproute2's place).
pub const NETNS_DIR: &str = "/run/netns";

/// Hearth's networking on one host (its root namespace, its range, its netns directory).
#[derive(Debug)]
pub struct Network {
    root: File,
    range: Range,
    netns_dir: PathBuf,
}

impl Network {
    /// Binds to the calling thread's network namespace as the root one.
    pub fn new(range: Range, netns_dir: impl Into<PathBuf>) -> Result<Network, NetError> {
        Ok(Network { root: ns::current()?, range, netns_dir: netns_dir.into() })
    }

    pub fn range(&self) -> Range {
        self.range
    }

    pub fn netns_dir(&self) -> &Path {
        &self.netns_dir
    }

    /// The netns file of workstation `id` (Firecracker's `NetConfig::netns`).
    pub fn netns_path(&self, id: &WorkstationId) -> PathBuf {
        self.netns_dir.join(id.netns())
    }

    pub(crate) fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// Installs (or atomically replaces) the `inet hearth` table; with `opts.forward`, also
    /// turns on IPv4 forwarding in the root namespace. Workstations' egress modes survive a
    /// re-init.
    pub fn init(&self, opts: &HostOpts) -> Result<(), NetError> {
        let bad = opts.uplink.is_empty() || opts.uplink.len() > alloc::MAX_IFNAME || opts.uplink.contains(['*', '/', ' ']);
        if bad {
            return Err(NetError::Invalid(format!("uplink interface name {:?}", opts.uplink)));
        }
        let range = self.range;
        ns::run_in(self.root(), || {
            nft::init(&range, opts)?;
            if opts.forward {
                tap::sysctl("ipv4/ip_forward", "1")?;
            }
            Ok(())
        })?
    }

    /// Removes the table (a host that stops serving workstations).
    pub fn remove_rules(&self) -> Result<(), NetError> {
        ns::run_in(self.root(), nft::remove)?
    }
}
