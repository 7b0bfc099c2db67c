//! The server's use of hearth-net: the host's rules at start, a workstation's network at
//! create and delete, the data the runtime starts its VM with, and reconciliation of what
//! exists with the rows that claim it (see docs/network.md).
//!
//! Owns the policy hearth-net is given: the uplink and resolvers (from the config, else
//! found on this host), each workstation's egress, the tap's owner. It does not pick slots
//! (the store does, in the row's transaction) or touch VMs (the runtime does).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use hearth_net::{Egress, GuestSide, HostOpts, NetError, Network, Range, SetupOpts, WorkstationId};
use hearth_proto::api;
use hearth_runtime::NetSpec;

use crate::config;
use crate::error::{Error, Unavailable};

/// The uplink the table is installed with when this host has none: hearth never makes an
/// interface of this name, so nothing is forwarded or masqueraded (every workstation is
/// effectively `none`, and creates asking for `nat` are refused).
const NO_UPLINK: &str = "hearth-noupl";

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("workstation networking: {0}")]
    Net(#[from] NetError),
    #[error("workstation networking: {0}")]
    Config(String),
}

/// Workstation networking on this host, set up (its nft table installed) by [`open`].
pub struct Net {
    net: Network,
    range: Range,
    /// None: no uplink (none configured, no default route): egress `nat` is unavailable.
    uplink: Option<String>,
    dns: Vec<Ipv4Addr>,
    mtu: u16,
    default_egress: Egress,
}

/// The interface of the IPv4 default route in `/proc/net/route` text, if there is one.
pub fn default_route_iface(route_table: &str) -> Option<String> {
    route_table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // Iface Destination Gateway Flags RefCnt Use Metric Mask …; RTF_UP = 1.
        let up = f.get(3).and_then(|x| u32::from_str_radix(x, 16).ok()).is_some_and(|fl| fl & 1 == 1);
        (f.len() > 7 && f[1] == "00000000" && f[7] == "00000000" && up).then(|| f[0].to_string())
    })
}

/// The IPv4 nameservers of resolv.conf text that are not loopback (a local stub resolver,
/// like systemd-resolved's 127.0.0.53, is the host's and unreachable from a guest).
pub fn resolv_conf_nameservers(text: &str) -> Vec<Ipv4Addr> {
    text.lines().filter_map(|l| l.trim().strip_prefix("nameserver")).filter_map(|a| a.trim().parse::<Ipv4Addr>().ok()).filter(|a| !a.is_loopback() && !a.is_unspecified()).collect()
}

/// Sets up this host's rules (table `inet hearth`, forwarding on); None when networking is
/// disabled.
pub fn open(cfg: &config::Network) -> Result<Option<Net>, NetworkError> {
    if !cfg.is_enabled() {
        if cfg.enabled.is_none() {
            tracing::warn!("not running as root: workstations get no network (network.enabled = true asks for it anyway)");
        } else {
            tracing::info!("workstation networking is disabled (network.enabled = false)");
        }
        return Ok(None);
    }
    let range: Range = cfg.parsed_range().map_err(NetworkError::Config)?;
    let uplink = if cfg.uplink.is_empty() {
        default_route_iface(&std::fs::read_to_string("/proc/net/route").unwrap_or_default())
    } else if std::path::Path::new("/sys/class/net").join(&cfg.uplink).exists() {
        Some(cfg.uplink.clone())
    } else {
        return Err(NetworkError::Config(format!("network.uplink: there is no interface {:?}", cfg.uplink)));
    };
    let mut dns = cfg.parsed_dns().map_err(NetworkError::Config)?;
    if dns.is_empty() {
        dns = resolv_conf_nameservers(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default());
    }
    let mut default_egress = cfg.parsed_egress().map_err(NetworkError::Config)?;
    if uplink.is_none() && default_egress == Egress::Nat {
        tracing::warn!("no network.uplink and no IPv4 default route: egress `nat` is unavailable, new workstations get `none`");
        default_egress = Egress::None;
    }
    if dns.is_empty() {
        tracing::warn!("no network.dns and no usable nameserver in /etc/resolv.conf: guests get no resolver");
    }
    let net = Network::new(range, hearth_net::NETNS_DIR)?;
    let allow = cfg.parsed_allow().map_err(NetworkError::Config)?;
    net.init(&HostOpts { uplink: uplink.clone().unwrap_or_else(|| NO_UPLINK.into()), dns: dns.clone(), allow, forward: true })?;
    tracing::info!(range = %range, uplink = uplink.as_deref().unwrap_or("none"), dns = ?dns, "workstation networking");
    Ok(Some(Net { net, range, uplink, dns, mtu: cfg.mtu, default_egress }))
}

fn id(id: &str) -> Result<WorkstationId, NetworkError> {
    WorkstationId::new(id).map_err(|e| NetworkError::Net(e.into()))
}

/// The network's egress for the API's.
pub fn from_api(e: api::Egress) -> Egress {
    match e {
        api::Egress::Nat => Egress::Nat,
        api::Egress::None => Egress::None,
    }
}

pub fn to_api(e: Egress) -> api::Egress {
    match e {
        Egress::Nat => api::Egress::Nat,
        Egress::None => api::Egress::None,
    }
}

impl Net {
    pub fn range(&self) -> &Range {
        &self.range
    }

    /// The egress a create gets: the one asked for, else the configured one. `nat` without
    /// an uplink is refused (503), not silently downgraded.
    pub fn egress_for(&self, asked: Option<api::Egress>) -> Result<Egress, Error> {
        match asked {
            None => Ok(self.default_egress),
            Some(api::Egress::None) => Ok(Egress::None),
            Some(api::Egress::Nat) if self.uplink.is_some() => Ok(Egress::Nat),
            Some(api::Egress::Nat) => Err(Error::Unavailable {
                what: Unavailable::Egress,
                message: "egress `nat` is unavailable: this server has no uplink (set network.uplink, or give the host an IPv4 default route)".into(),
            }),
        }
    }

    /// Makes workstation `ws`'s network in `slot`; its tap belongs to `owner` (the jail
    /// uid, whose Firecracker opens it), or root when unjailed.
    pub fn setup(&self, ws: &str, slot: u32, egress: Egress, owner: Option<u32>) -> Result<(), NetworkError> {
        let uid = owner.unwrap_or(0);
        self.net.setup(&id(ws)?, slot, &SetupOpts { egress, guest: GuestSide::Tap { uid, gid: uid } })?;
        Ok(())
    }

    /// Removes whatever of `ws`'s network exists (stop its VM first).
    pub fn teardown(&self, ws: &str) -> Result<(), NetworkError> {
        Ok(self.net.teardown(&id(ws)?)?)
    }

    /// What the runtime starts `ws`'s VM with; `(rx, tx)` Mbit/s, 0: unlimited.
    pub fn spec(&self, ws: &str, slot: u32, (rx_mbps, tx_mbps): (u32, u32)) -> Result<NetSpec, NetworkError> {
        let s = self.range.slot(slot).map_err(NetError::from)?;
        Ok(NetSpec {
            netns: self.net.netns_path(&id(ws)?),
            tap: hearth_net::alloc::TAP.into(),
            mac: s.guest_mac_string(),
            address: s.guest(),
            prefix: hearth_net::Slot::PREFIX,
            gateway: s.gateway(),
            mtu: self.mtu,
            dns: self.dns.clone(),
            rx_mbps,
            tx_mbps,
        })
    }

    /// Makes sure `ws`'s network exists with `egress`: set up (again) when its netns or
    /// host veth is missing — after a host reboot /run/netns is empty — else its egress
    /// set. True when it was set up.
    pub fn ensure(&self, ws: &str, slot: u32, egress: Egress, owner: Option<u32>, inv: &hearth_net::Inventory) -> Result<bool, NetworkError> {
        let wid = id(ws)?;
        let whole = inv.netns.contains(&wid.netns()) && inv.links.contains(&wid.host_veth());
        if whole {
            self.net.set_egress(&wid, egress)?;
            return Ok(false);
        }
        // Whatever half of it a crash left goes first.
        self.net.teardown(&wid)?;
        self.setup(ws, slot, egress, owner)?;
        Ok(true)
    }

    pub fn list(&self) -> Result<hearth_net::Inventory, NetworkError> {
        Ok(self.net.list()?)
    }

    /// Tears down every hearth-owned network whose workstation is not in `known`; returns
    /// their ids.
    pub fn remove_unknown(&self, inv: &hearth_net::Inventory, known: &BTreeSet<String>) -> Vec<String> {
        let mut removed = Vec::new();
        for wid in inv.workstations() {
            if known.contains(wid.as_str()) {
                continue;
            }
            match self.net.teardown(&wid) {
                Ok(()) => tracing::warn!(workstation = %wid, "removed a network no workstation record claims"),
                Err(e) => tracing::warn!(workstation = %wid, "removing a network no record claims: {e}"),
            }
            removed.push(wid.to_string());
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_route_and_resolvers_are_read_from_the_host_files() {
        let route = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth1\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                     down0\t00000000\t0102000A\t0002\t0\t0\t0\t00000000\t0\t0\t0\n\
                     eth0\t00000000\t0102000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n";
        assert_eq!(default_route_iface(route).as_deref(), Some("eth0"));
        assert_eq!(default_route_iface(&route.lines().take(2).collect::<Vec<_>>().join("\n")), None);
        let resolv = "# comment\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\nnameserver 1.1.1.1 \noptions edns0\n";
        assert_eq!(resolv_conf_nameservers(resolv), [Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(1, 1, 1, 1)]);
    }
}
