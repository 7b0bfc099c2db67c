//! What hearth-owned network objects exist, for reconciliation at server start (remove
//! what no workstation record claims) and for leak checks in tests (compare before/after).

use std::collections::BTreeSet;

use ipnet::Ipv4Net;

use crate::alloc::{WorkstationId, HOST_VETH_PREFIX, NETNS_PREFIX};
use crate::{netns as ns, nft, nl, NetError, Network};

/// Hearth's objects in the root namespace and the netns directory, each list sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// Named namespaces `hearth-*` in the netns directory.
    pub netns: Vec<String>,
    /// Root-side links `hv` + 12 hex digits.
    pub links: Vec<String>,
    /// IPv4 addresses inside the range on root-side links.
    pub addresses: Vec<Ipv4Net>,
    /// Main-table routes inside the range.
    pub routes: Vec<Ipv4Net>,
    /// Elements of the nft set `nat_ifaces`.
    pub nat_ifaces: Vec<String>,
}

impl Inventory {
    /// The workstations any object belongs to (names that are not hearth-made are left out).
    pub fn workstations(&self) -> BTreeSet<WorkstationId> {
        self.netns.iter().chain(&self.links).chain(&self.nat_ifaces).filter_map(|n| WorkstationId::from_name(n)).collect()
    }

    /// Nothing hearth-made is left.
    pub fn is_empty(&self) -> bool {
        *self == Inventory::default()
    }
}

impl Network {
    /// Lists hearth-owned objects (see [`Inventory`]).
    pub fn list(&self) -> Result<Inventory, NetError> {
        let range = self.range().net();
        let (links, addresses, routes) = nl::run(self.root(), |h| async move {
            let links = nl::links(&h).await?;
            let addrs = nl::addrs(&h).await?;
            let routes = nl::routes(&h).await?;
            Ok((links, addrs, routes))
        })?;
        let mut inv = Inventory {
            netns: ns::list(self.netns_dir(), NETNS_PREFIX)?,
            links: links.into_iter().map(|(_, n)| n).filter(|n| n.starts_with(HOST_VETH_PREFIX) && WorkstationId::from_name(n).is_some()).collect(),
            addresses: addresses.into_iter().map(|(_, a)| a).filter(|a| range.contains(&a.addr())).collect(),
            routes: routes.into_iter().map(|(d, _)| d).filter(|d| range.contains(d)).collect(),
            nat_ifaces: ns::run_in(self.root(), nft::nat_ifaces)??,
        };
        inv.links.sort();
        inv.addresses.sort();
        inv.routes.sort();
        Ok(inv)
    }
}
