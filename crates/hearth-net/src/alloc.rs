//! Pure allocation: which addresses, MAC and names a workstation's network uses.
//!
//! No I/O here. A range is cut into /29 slots; slot `n` of range `R` starts at `R + 8n`:
//!
//! ```text
//! base+0/30  tap side, inside the workstation's netns: base+1 gateway (tap0), base+2 guest
//! base+4/30  veth pair: base+5 host end (root netns), base+6 end inside the workstation netns
//! ```
//!
//! Which slot a workstation holds is the caller's record (the database); this module only
//! maps slots to addresses and back, and picks the lowest free slot.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;

/// The range used when the configuration names none.
pub const DEFAULT_RANGE: &str = "10.200.0.0/16";
/// Addresses per slot (a /29).
const SLOT_SIZE: u32 = 8;
/// Linux interface names are at most IFNAMSIZ - 1 = 15 bytes.
pub const MAX_IFNAME: usize = 15;

/// Why a range, slot or id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error("address range {0:?} is not an IPv4 network in CIDR form (like 10.200.0.0/16)")]
    Syntax(String),
    #[error("address range {0} has host bits set: it must start at its network address ({1})")]
    NotAligned(Ipv4Net, Ipv4Addr),
    #[error("address range {0} is smaller than one /29 slot")]
    TooSmall(Ipv4Net),
    #[error("address range {0} is not inside a private range (10/8, 172.16/12, 192.168/16)")]
    NotPrivate(Ipv4Net),
    #[error("slot {slot} is outside the range, which has {slots} slots")]
    NoSuchSlot { slot: u32, slots: u32 },
    #[error("the address range {range} is exhausted: all {slots} workstation slots are in use")]
    Exhausted { range: Ipv4Net, slots: u32 },
    #[error("workstation id {0:?} is not `w` followed by 12 lowercase hex digits")]
    BadId(String),
}

/// A validated address range: private, aligned, at least one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range(Ipv4Net);

impl Range {
    pub fn new(net: Ipv4Net) -> Result<Range, AllocError> {
        if net.network() != net.addr() {
            return Err(AllocError::NotAligned(net, net.network()));
        }
        if net.prefix_len() > 29 {
            return Err(AllocError::TooSmall(net));
        }
        let private = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"];
        if !private.iter().filter_map(|p| p.parse::<Ipv4Net>().ok()).any(|p| p.contains(&net)) {
            return Err(AllocError::NotPrivate(net));
        }
        Ok(Range(net))
    }

    pub fn net(&self) -> Ipv4Net {
        self.0
    }

    /// How many /29 slots the range holds (a /8 holds 2^21: this fits a u32).
    pub fn slots(&self) -> u32 {
        1u32 << (29 - self.0.prefix_len())
    }

    /// The addresses of slot `index`.
    pub fn slot(&self, index: u32) -> Result<Slot, AllocError> {
        if index >= self.slots() {
            return Err(AllocError::NoSuchSlot { slot: index, slots: self.slots() });
        }
        // No overflow: index < slots, so base + 7 stays inside the range.
        let base = u32::from(self.0.network()) + index * SLOT_SIZE;
        Ok(Slot { index, base: Ipv4Addr::from(base) })
    }

    /// The slot an address of the range belongs to (any of its 8 addresses), if any.
    pub fn slot_of(&self, addr: Ipv4Addr) -> Option<u32> {
        self.0.contains(&addr).then(|| (u32::from(addr) - u32::from(self.0.network())) / SLOT_SIZE)
    }

    /// The lowest slot not in `used`, or `Exhausted`.
    pub fn allocate(&self, used: &BTreeSet<u32>) -> Result<u32, AllocError> {
        // Slots in use are sorted: the first gap is the answer.
        let mut next = 0u32;
        for &u in used.range(..self.slots()) {
            if u != next {
                break;
            }
            next += 1;
        }
        if next < self.slots() {
            Ok(next)
        } else {
            Err(AllocError::Exhausted { range: self.0, slots: self.slots() })
        }
    }
}

impl Default for Range {
    fn default() -> Range {
        Range(Ipv4Net::new(Ipv4Addr::new(10, 200, 0, 0), 16).unwrap_or_default())
    }
}

impl FromStr for Range {
    type Err = AllocError;
    fn from_str(s: &str) -> Result<Range, AllocError> {
        let net = s.trim().parse::<Ipv4Net>().map_err(|_| AllocError::Syntax(s.to_string()))?;
        Range::new(net)
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One workstation's /29.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    index: u32,
    base: Ipv4Addr,
}

impl Slot {
    pub fn index(&self) -> u32 {
        self.index
    }
    fn at(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) + offset)
    }
    /// The guest's /30 (`base+0/30`): routed to the workstation's netns.
    pub fn guest_net(&self) -> Ipv4Net {
        Ipv4Net::new(self.base, 30).unwrap_or_default()
    }
    /// The veth pair's /30 (`base+4/30`).
    pub fn veth_net(&self) -> Ipv4Net {
        Ipv4Net::new(self.at(4), 30).unwrap_or_default()
    }
    /// On tap0, inside the workstation's netns: the guest's default gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        self.at(1)
    }
    pub fn guest(&self) -> Ipv4Addr {
        self.at(2)
    }
    /// The host end of the veth pair, in the root netns.
    pub fn veth_host(&self) -> Ipv4Addr {
        self.at(5)
    }
    /// The end of the veth pair inside the workstation's netns.
    pub fn veth_ns(&self) -> Ipv4Addr {
        self.at(6)
    }
    /// Prefix length of both /30s.
    pub const PREFIX: u8 = 30;
    /// A locally administered unicast MAC (02:68 = "h"), unique per slot in any range.
    pub fn guest_mac(&self) -> [u8; 6] {
        let i = self.index.to_be_bytes();
        [0x02, 0x68, i[0], i[1], i[2], i[3]]
    }
    /// The MAC as Firecracker's API wants it (`02:68:00:00:00:05`).
    pub fn guest_mac_string(&self) -> String {
        self.guest_mac().iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
    }
}

/// A workstation id as the server makes them: `w` + 12 lowercase hex digits. The 12 digits
/// are what fits an interface name with a 2-byte prefix.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkstationId(String);

impl WorkstationId {
    pub fn new(id: &str) -> Result<WorkstationId, AllocError> {
        let hex = id.strip_prefix('w').filter(|h| h.len() == 12);
        match hex {
            Some(h) if h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) => Ok(WorkstationId(id.to_string())),
            _ => Err(AllocError::BadId(id.to_string())),
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    fn hex(&self) -> &str {
        &self.0[1..]
    }
    /// The named netns (a file in the netns directory, `/run/netns` by default).
    pub fn netns(&self) -> String {
        format!("{NETNS_PREFIX}{}", self.0)
    }
    /// The host end of the veth pair, in the root netns.
    pub fn host_veth(&self) -> String {
        format!("{HOST_VETH_PREFIX}{}", self.hex())
    }
    /// The other end: created with this name in the root netns' name space only for an
    /// instant (it is born inside the workstation's netns), so it cannot clash there.
    pub fn ns_veth(&self) -> String {
        format!("{NS_VETH_PREFIX}{}", self.hex())
    }
    /// Parses an id back from a hearth-made netns or interface name.
    pub fn from_name(name: &str) -> Option<WorkstationId> {
        if let Some(id) = name.strip_prefix(NETNS_PREFIX) {
            return WorkstationId::new(id).ok();
        }
        let hex = name.strip_prefix(HOST_VETH_PREFIX).or_else(|| name.strip_prefix(NS_VETH_PREFIX))?;
        WorkstationId::new(&format!("w{hex}")).ok()
    }
}

impl fmt::Display for WorkstationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Named network namespaces hearth owns start with this.
pub const NETNS_PREFIX: &str = "hearth-";
/// Root-side veths hearth owns start with this (the nft rules match `hv*`).
pub const HOST_VETH_PREFIX: &str = "hv";
const NS_VETH_PREFIX: &str = "hp";
/// The tap Firecracker opens, inside every workstation's netns (each has its own).
pub const TAP: &str = "tap0";

#[cfg(test)]
#[path = "alloc_tests.rs"]
mod tests;
