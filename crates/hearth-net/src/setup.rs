//! One workstation's network: set up step by step, each step's undo registered as soon as
//! it succeeds, so a failure part-way unwinds exactly what was made, in reverse order.
//! Teardown runs every undo step whatever exists: it is idempotent and handles a
//! half-made network the same way.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use rtnetlink::Handle;

use crate::alloc::{Slot, WorkstationId, TAP};
use crate::{netns as ns, nft, nl, tap, NetError, Network};

/// Whether a workstation's traffic may leave the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Egress {
    /// Masqueraded out of the uplink, under the table's rules.
    #[default]
    Nat,
    /// Nothing forwarded, nothing to the host: its veth is not in the nat set.
    None,
}

/// What plays the guest's side of the workstation's netns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestSide {
    /// The product path: a persistent `tap0` that Firecracker, running as `uid`/`gid`,
    /// opens. It has no carrier until Firecracker attaches.
    Tap { uid: u32, gid: u32 },
    /// For tests: a veth named `tap0` whose other end, `eth0` in the netns file `guest`,
    /// is configured as the agent would configure the guest (address, default route).
    Veth { guest: PathBuf },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupOpts {
    pub egress: Egress,
    pub guest: GuestSide,
}

/// What the VM needs to use the network made for it (`hearth-vmm`'s `NetConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkstationNet {
    /// The netns file Firecracker is started in.
    pub netns: PathBuf,
    pub tap: String,
    pub mac: String,
    pub slot: Slot,
}

/// The undo of one setup step, run in reverse order.
#[derive(Debug, Clone, Copy)]
enum Undo {
    Netns,
    HostVeth,
    Route(Ipv4Net),
    Nat,
}

impl Network {
    /// Makes workstation `id`'s network in `slot` (see the crate docs). `Exists` if the
    /// id's netns or veth, or the slot's routes, are there already: nothing is changed.
    pub fn setup(&self, id: &WorkstationId, slot: u32, opts: &SetupOpts) -> Result<WorkstationNet, NetError> {
        let slot = self.range().slot(slot)?;
        // Fail closed: without the table nothing would filter this workstation's traffic.
        if !ns::run_in(self.root(), nft::table_exists)?? {
            return Err(NetError::NotInitialized);
        }
        let host = id.host_veth();
        let host = host.as_str();
        nl::run(self.root(), |h| async move { vacant(&h, host, &slot).await })?;
        let mut done = Vec::new();
        match self.build(id, &slot, opts, &mut done) {
            Ok(()) => Ok(WorkstationNet { netns: self.netns_path(id), tap: TAP.to_string(), mac: slot.guest_mac_string(), slot }),
            Err(e) => {
                for u in done.iter().rev() {
                    let _ = self.undo(id, *u);
                }
                Err(e)
            }
        }
    }

    fn build(&self, id: &WorkstationId, slot: &Slot, opts: &SetupOpts, done: &mut Vec<Undo>) -> Result<(), NetError> {
        let wsns = ns::create(&self.netns_path(id))?;
        done.push(Undo::Netns);
        let (host, peer, s) = (id.host_veth(), id.ns_veth(), *slot);
        let (host, peer, ws) = (host.as_str(), peer.as_str(), wsns.as_fd());
        nl::run(self.root(), |h| async move { nl::add_veth(&h, host, peer, ws).await })?;
        done.push(Undo::HostVeth);
        ns::run_in(self.root(), || tap::no_ipv6(host))??;
        nl::run(self.root(), |h| async move {
            let i = nl::up(&h, host).await?;
            nl::add_addr(&h, i, s.veth_host(), Slot::PREFIX).await
        })?;
        inside(ws, peer, slot, &opts.guest)?;
        nl::run(self.root(), |h| async move {
            let i = nl::link_index(&h, host).await?.ok_or_else(|| nl::missing(host))?;
            nl::add_route(&h, s.guest_net(), s.veth_ns(), i).await
        })?;
        done.push(Undo::Route(slot.guest_net()));
        if opts.egress == Egress::Nat {
            ns::run_in(self.root(), || nft::nat_add(host))??;
            done.push(Undo::Nat);
        }
        Ok(())
    }

    fn undo(&self, id: &WorkstationId, step: Undo) -> Result<(), NetError> {
        let host = id.host_veth();
        let host = host.as_str();
        match step {
            Undo::Nat => ns::run_in(self.root(), || nft::nat_remove(host))?,
            Undo::Route(dst) => nl::run(self.root(), |h| async move { nl::del_route(&h, dst).await }),
            // The peer goes with it; so do the routes through it and its address.
            Undo::HostVeth => nl::run(self.root(), |h| async move { nl::del_link(&h, host).await }),
            Undo::Netns => ns::delete(&self.netns_path(id)),
        }
    }

    /// Removes workstation `id`'s network: its nat set element, root-side routes through
    /// its veth, the veth (both ends), its netns (with tap0 inside). Whatever of it exists;
    /// nothing is fine. Every step is tried; the first error is returned.
    pub fn teardown(&self, id: &WorkstationId) -> Result<(), NetError> {
        let host = id.host_veth();
        let host = host.as_str();
        let (mut first, routes) = match nl::run(self.root(), |h| async move { routes_via(&h, host).await }) {
            Ok(r) => (None, r),
            Err(e) => (Some(e), Vec::new()),
        };
        let mut steps = vec![Undo::Nat];
        steps.extend(routes.into_iter().map(Undo::Route));
        steps.extend([Undo::HostVeth, Undo::Netns]);
        for step in steps {
            if let Err(e) = self.undo(id, step) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Switches a workstation's egress: one set element added or removed, atomically.
    pub fn set_egress(&self, id: &WorkstationId, egress: Egress) -> Result<(), NetError> {
        let host = id.host_veth();
        ns::run_in(self.root(), || match egress {
            Egress::Nat if !nft::table_exists()? => Err(NetError::NotInitialized),
            Egress::Nat => nft::nat_add(&host),
            Egress::None => nft::nat_remove(&host),
        })?
    }
}

/// `Exists` if link `host` or a route into the slot is there.
async fn vacant(h: &Handle, host: &str, slot: &Slot) -> Result<(), NetError> {
    if nl::link_index(h, host).await?.is_some() {
        return Err(NetError::Exists { what: format!("link {host}") });
    }
    // The slot's own routes are /30s (a /29 or /32 into it would clash too); wider ones,
    // like a default route, contain every slot and say nothing.
    let taken = nl::routes(h).await?.into_iter().find(|(dst, _)| dst.prefix_len() >= 29 && (dst.contains(&slot.guest()) || dst.contains(&slot.veth_host())));
    match taken {
        Some((dst, _)) => Err(NetError::Exists { what: format!("slot {} (route {dst})", slot.index()) }),
        None => Ok(()),
    }
}

/// Main-table routes out of link `name` (the kernel's connected one too: deleting it
/// first is harmless, the link goes next).
async fn routes_via(h: &Handle, name: &str) -> Result<Vec<Ipv4Net>, NetError> {
    let Some(index) = nl::link_index(h, name).await? else { return Ok(Vec::new()) };
    Ok(nl::routes(h).await?.into_iter().filter(|(_, oif)| *oif == Some(index)).map(|(dst, _)| dst).collect())
}

/// Inside the workstation's netns: lo and the veth end up, its address, the default route
/// to the host, forwarding, and the guest side.
fn inside(ws: BorrowedFd<'_>, peer: &str, slot: &Slot, guest: &GuestSide) -> Result<(), NetError> {
    let s = *slot;
    ns::run_in(ws, || tap::no_ipv6(peer))??;
    nl::run(ws, |h| async move {
        nl::up(&h, "lo").await?;
        let i = nl::up(&h, peer).await?;
        nl::add_addr(&h, i, s.veth_ns(), Slot::PREFIX).await?;
        nl::add_route(&h, Ipv4Net::default(), s.veth_host(), i).await
    })?;
    ns::run_in(ws, || tap::sysctl("ipv4/ip_forward", "1"))??;
    match guest {
        GuestSide::Tap { uid, gid } => ns::run_in(ws, || tap::create_persistent(TAP, *uid, *gid))??,
        GuestSide::Veth { guest } => guest_veth(ws, guest, slot)?,
    }
    ns::run_in(ws, || tap::no_ipv6(TAP))??;
    nl::run(ws, |h| async move {
        let i = nl::up(&h, TAP).await?;
        nl::add_addr(&h, i, s.gateway(), Slot::PREFIX).await
    })
}

/// The test guest: `tap0` here, `eth0` in `guest`, set up as the agent sets up a guest.
fn guest_veth(ws: BorrowedFd<'_>, guest: &Path, slot: &Slot) -> Result<(), NetError> {
    let g = ns::open(guest)?;
    let g_fd = g.as_fd();
    nl::run(ws, |h| async move { nl::add_veth(&h, TAP, "eth0", g_fd).await })?;
    let s = *slot;
    nl::run(g.as_fd(), |h| async move {
        nl::up(&h, "lo").await?;
        let i = nl::up(&h, "eth0").await?;
        nl::add_addr(&h, i, s.guest(), Slot::PREFIX).await?;
        nl::add_route(&h, Ipv4Net::default(), s.gateway(), i).await
    })
}
