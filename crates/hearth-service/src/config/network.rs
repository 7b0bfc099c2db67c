//! The `[network]` block of the configuration: its keys, defaults and checks, and the typed
//! values the server's networking is made from. Host-dependent defaults (an empty `uplink`
//! or `dns`) are resolved when the server opens (`crate::network`), not here.

use serde::{Deserialize, Serialize};

/// Workstation networking (docs/network.md). Checked at load; the host-dependent parts
/// (`uplink` and `dns` left empty) are resolved when the server opens (`crate::network`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Network {
    /// Give every new workstation a network namespace, a tap and an address. Unset: on where
    /// it can work (the server runs as root; inside the box it always does), else off with a
    /// warning. Set to true, a server that cannot set networking up does not start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The private range workstations' /29 slots are cut from.
    pub range: String,
    /// The interface NAT egress leaves by; empty: the interface of the IPv4 default route.
    pub uplink: String,
    /// A create without `egress` gets this: `nat` or `none`.
    pub egress: String,
    /// Resolvers written into guests' resolv.conf (and opened on port 53); empty: the
    /// non-loopback IPv4 nameservers of the server's /etc/resolv.conf.
    pub dns: Vec<String>,
    /// Destinations opened on top of NAT egress: `CIDR` or `CIDR:port` (TCP and UDP).
    pub allow: Vec<String>,
    /// The guests' MTU (the host side's links are 1500).
    pub mtu: u16,
    /// Extra CA certificates guests trust (PEM files, or directories whose `*.crt` files
    /// are), put into each guest's store at every boot: behind a TLS-intercepting proxy
    /// `pip install` in a guest fails without the proxy's CA. Default: the host's own extra
    /// CAs, `/usr/local/share/ca-certificates` (missing: none).
    pub ca_certificates: Vec<String>,
}

/// Where Debian and Ubuntu keep a host's own extra CA certificates.
pub const HOST_CA_DIR: &str = "/usr/local/share/ca-certificates";

/// Entries in `network.allow` and `network.dns` at most: each is a rule or set element.
pub const MAX_NET_LIST: usize = 256;

impl Default for Network {
    fn default() -> Self {
        Self {
            enabled: None,
            range: hearth_net::alloc::DEFAULT_RANGE.into(),
            uplink: String::new(),
            egress: "nat".into(),
            dns: vec![],
            allow: vec![],
            mtu: 1500,
            ca_certificates: vec![HOST_CA_DIR.into()],
        }
    }
}

impl Network {
    /// Whether workstations get networks: as configured, else whether this process is root.
    pub fn is_enabled(&self) -> bool {
        self.enabled.unwrap_or_else(super::nix_is_root)
    }

    pub fn parsed_range(&self) -> Result<hearth_net::Range, String> {
        self.range.parse().map_err(|e: hearth_net::AllocError| format!("network.range: {e}"))
    }

    pub fn parsed_egress(&self) -> Result<hearth_net::Egress, String> {
        parse_egress(&self.egress).map_err(|e| format!("network.egress: {e}"))
    }

    pub fn parsed_dns(&self) -> Result<Vec<std::net::Ipv4Addr>, String> {
        self.dns.iter().map(|d| d.trim().parse().map_err(|_| format!("network.dns: {d:?} is not an IPv4 address"))).collect()
    }

    pub fn parsed_allow(&self) -> Result<Vec<hearth_net::Allow>, String> {
        self.allow.iter().map(|a| parse_allow(a).map_err(|e| format!("network.allow: {a:?}: {e}"))).collect()
    }

    pub(super) fn check(&self) -> Result<(), String> {
        self.parsed_range()?;
        self.parsed_egress()?;
        self.parsed_dns()?;
        self.parsed_allow()?;
        if self.dns.len() > MAX_NET_LIST || self.allow.len() > MAX_NET_LIST {
            return Err(format!("network.dns and network.allow hold at most {MAX_NET_LIST} entries each"));
        }
        let bad_if = self.uplink.len() > hearth_net::alloc::MAX_IFNAME || self.uplink.contains(['*', '/', ' ']);
        if bad_if {
            return Err(format!("network.uplink: {:?} is not an interface name (at most 15 bytes, no `*`, `/` or spaces)", self.uplink));
        }
        if !(576..=1500).contains(&self.mtu) {
            return Err("network.mtu: must be 576-1500 (the host side's links are 1500)".into());
        }
        Ok(())
    }
}

/// `nat` or `none`.
pub fn parse_egress(s: &str) -> Result<hearth_net::Egress, String> {
    match s {
        "nat" => Ok(hearth_net::Egress::Nat),
        "none" => Ok(hearth_net::Egress::None),
        _ => Err(format!("{s:?} is neither `nat` nor `none`")),
    }
}

/// `CIDR`, `CIDR:port`, or a bare address (a /32), with or without a port.
fn parse_allow(s: &str) -> Result<hearth_net::Allow, String> {
    let (net, port) = match s.rsplit_once(':') {
        Some((net, port)) => (net, Some(port.parse::<u16>().ok().filter(|p| *p > 0).ok_or("the port must be 1-65535")?)),
        None => (s, None),
    };
    let net: hearth_net::Ipv4Net = match net.parse() {
        Ok(n) => n,
        Err(_) => net.parse::<std::net::Ipv4Addr>().map(hearth_net::Ipv4Net::from).map_err(|_| "expected CIDR or CIDR:port (like 10.1.2.0/24:443)")?,
    };
    if net.network() != net.addr() {
        return Err(format!("host bits set: did you mean {}/{}?", net.network(), net.prefix_len()));
    }
    Ok(hearth_net::Allow { net, port })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_network_block_is_checked_at_load() {
        let c = Config::load(
            None,
            env(&[
                ("HEARTH_NETWORK__UPLINK", "up0"),
                ("HEARTH_NETWORK__DNS", r#"["203.0.113.53"]"#),
                ("HEARTH_NETWORK__ALLOW", r#"["10.1.0.0/16", "10.2.0.5:443", "10.3.0.0/24:53"]"#),
            ]),
        )
        .unwrap();
        assert_eq!((c.network.uplink.as_str(), c.network.parsed_dns().unwrap()), ("up0", vec![std::net::Ipv4Addr::new(203, 0, 113, 53)]));
        let allow = c.network.parsed_allow().unwrap();
        assert_eq!(
            allow.iter().map(|a| (a.net.to_string(), a.port)).collect::<Vec<_>>(),
            [(String::from("10.1.0.0/16"), None), ("10.2.0.5/32".into(), Some(443)), ("10.3.0.0/24".into(), Some(53))]
        );
        assert_eq!(Config::default().network.parsed_range().unwrap().slots(), 8192);
        // Unset, networking is on exactly where the server is root; either way it can be said.
        assert_eq!(Config::default().network.enabled, None);
        assert_eq!(Config::default().network.is_enabled(), nix::unistd::geteuid().is_root());
        for (value, want) in [("false", false), ("true", true)] {
            let c = Config::load(None, env(&[("HEARTH_NETWORK__ENABLED", value)])).unwrap();
            assert_eq!((c.network.enabled, c.network.is_enabled()), (Some(want), want));
        }
        let toml = toml::to_string(&Config::default()).unwrap();
        assert!(!toml.contains("enabled"), "unset stays unset when written for the box: {toml}");
        for (key, value, want) in [
            ("HEARTH_NETWORK__RANGE", "8.8.0.0/16", "network.range"),
            ("HEARTH_NETWORK__RANGE", "10.200.0.0/30", "smaller than one /29"),
            ("HEARTH_NETWORK__RANGE", "10.200.0.1/16", "host bits"),
            ("HEARTH_NETWORK__EGRESS", "open", "network.egress"),
            ("HEARTH_NETWORK__DNS", r#"["one.one"]"#, "network.dns"),
            ("HEARTH_NETWORK__ALLOW", r#"["10.1.0.1/16"]"#, "did you mean 10.1.0.0/16"),
            ("HEARTH_NETWORK__ALLOW", r#"["10.1.0.0/16:0"]"#, "port must be 1-65535"),
            ("HEARTH_NETWORK__ALLOW", r#"["somewhere"]"#, "CIDR or CIDR:port"),
            ("HEARTH_NETWORK__UPLINK", "eth*", "network.uplink"),
            ("HEARTH_NETWORK__MTU", "9000", "network.mtu"),
            ("HEARTH_DEFAULTS__RX_MBPS", "20000", "defaults.rx_mbps"),
        ] {
            let e = Config::load(None, env(&[(key, value)])).unwrap_err().to_string();
            assert!(e.contains(want), "{key}={value}: {e}");
        }
    }
}
