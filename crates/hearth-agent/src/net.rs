//! The guest's network, as the host hands it over on the kernel command line:
//! `hearth.net=ADDR/PREFIX,GATEWAY,MTU` and `hearth.dns=IP[,IP…]`.
//!
//! Configured with the classic interface and route ioctls, so it needs nothing from the image
//! (no iproute2) and no netlink stack in PID 1. Loopback is brought up always.

use std::ffi::c_char;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The interface Firecracker's first virtio-net device becomes.
const IFACE: &str = "eth0";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NetParams {
    pub(crate) addr: Ipv4Addr,
    pub(crate) prefix: u8,
    pub(crate) gateway: Ipv4Addr,
    pub(crate) mtu: u32,
}

/// Parses `ADDR/PREFIX,GATEWAY,MTU`.
pub(crate) fn parse_net(v: &str) -> Result<NetParams, String> {
    let bad = || format!("hearth.net={v}: expected ADDR/PREFIX,GATEWAY,MTU");
    let mut parts = v.split(',');
    let (addr, prefix) = parts.next().and_then(|a| a.split_once('/')).ok_or_else(bad)?;
    let gateway = parts.next().ok_or_else(bad)?;
    let mtu = parts.next().ok_or_else(bad)?;
    let p = NetParams {
        addr: addr.parse().map_err(|_| bad())?,
        prefix: prefix.parse().ok().filter(|p| *p <= 32).ok_or_else(bad)?,
        gateway: gateway.parse().map_err(|_| bad())?,
        mtu: mtu.parse().ok().filter(|m| (68..=65535).contains(m)).ok_or_else(bad)?,
    };
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(p)
}

/// Parses `IP[,IP…]` (at most three, as resolv.conf honours).
pub(crate) fn parse_dns(v: &str) -> Result<Vec<Ipv4Addr>, String> {
    let ips: Result<Vec<Ipv4Addr>, _> = v.split(',').map(str::parse).collect();
    match ips {
        Ok(ips) if !ips.is_empty() && ips.len() <= 3 => Ok(ips),
        _ => Err(format!("hearth.dns={v}: expected one to three IPv4 addresses")),
    }
}

/// The contents of /etc/resolv.conf for these servers.
pub(crate) fn resolv_conf(dns: &[Ipv4Addr]) -> String {
    let mut s = String::from("# written by hearth-agent at boot from the host's settings\n");
    for ip in dns {
        s.push_str(&format!("nameserver {ip}\n"));
    }
    s
}

fn sockaddr(ip: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in { sin_family: libc::AF_INET as libc::sa_family_t, sin_port: 0, sin_addr: libc::in_addr { s_addr: u32::from(ip).to_be() }, sin_zero: [0; 8] };
    // SAFETY: sockaddr_in and sockaddr have the same size; this is how the ioctls take it.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in r.ifr_name.iter_mut().zip(name.bytes().take(libc::IFNAMSIZ - 1)) {
        *d = s as c_char;
    }
    r
}

fn ioctl<T>(fd: &OwnedFd, req: libc::Ioctl, arg: &mut T, what: &str) -> Result<(), String> {
    // SAFETY: each caller passes the argument type its request reads or writes.
    if unsafe { libc::ioctl(fd.as_raw_fd(), req, arg as *mut T) } != 0 {
        return Err(format!("{what}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

fn socket() -> Result<OwnedFd, String> {
    // SAFETY: a plain socket(2); the descriptor is owned from here.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(format!("socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: fd was just returned by socket(2) and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn link_up(fd: &OwnedFd, name: &str) -> Result<(), String> {
    let mut r = ifreq(name);
    ioctl(fd, libc::SIOCGIFFLAGS, &mut r, &format!("reading {name}'s flags"))?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    unsafe { r.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    ioctl(fd, libc::SIOCSIFFLAGS, &mut r, &format!("bringing {name} up"))
}

/// Brings loopback up.
pub(crate) fn loopback_up() -> Result<(), String> {
    link_up(&socket()?, "lo")
}

/// Gives eth0 its address, MTU and default route.
pub(crate) fn configure(p: &NetParams) -> Result<(), String> {
    let fd = socket()?;
    let mut r = ifreq(IFACE);
    r.ifr_ifru.ifru_mtu = p.mtu as libc::c_int;
    ioctl(&fd, libc::SIOCSIFMTU, &mut r, "setting the MTU")?;
    let mut r = ifreq(IFACE);
    r.ifr_ifru.ifru_addr = sockaddr(p.addr);
    ioctl(&fd, libc::SIOCSIFADDR, &mut r, "setting the address")?;
    let mask = if p.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(p.prefix)) };
    let mut r = ifreq(IFACE);
    r.ifr_ifru.ifru_netmask = sockaddr(Ipv4Addr::from(mask));
    ioctl(&fd, libc::SIOCSIFNETMASK, &mut r, "setting the netmask")?;
    link_up(&fd, IFACE)?;
    // SAFETY: rtentry is plain data; all zeroes is a valid value.
    let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
    rt.rt_dst = sockaddr(Ipv4Addr::UNSPECIFIED);
    rt.rt_genmask = sockaddr(Ipv4Addr::UNSPECIFIED);
    rt.rt_gateway = sockaddr(p.gateway);
    rt.rt_flags = (libc::RTF_UP | libc::RTF_GATEWAY) as libc::c_ushort;
    ioctl(&fd, libc::SIOCADDRT, &mut rt, "adding the default route")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_parse_or_say_what_is_wrong() {
        assert_eq!(parse_net("10.0.0.2/30,10.0.0.1,1400").unwrap(), NetParams { addr: [10, 0, 0, 2].into(), prefix: 30, gateway: [10, 0, 0, 1].into(), mtu: 1400 });
        for bad in ["10.0.0.2,10.0.0.1,1400", "10.0.0.2/33,10.0.0.1,1400", "10.0.0.2/30,x,1400", "10.0.0.2/30,10.0.0.1,20", "a/1,b,c,d"] {
            assert!(parse_net(bad).unwrap_err().contains("expected"), "{bad}");
        }
        assert_eq!(parse_dns("1.1.1.1,9.9.9.9").unwrap().len(), 2);
        assert!(parse_dns("1.1.1.1,2.2.2.2,3.3.3.3,4.4.4.4").is_err());
        assert!(parse_dns("").is_err());
        assert_eq!(resolv_conf(&[[1, 1, 1, 1].into()]).lines().last(), Some("nameserver 1.1.1.1"));
    }
}
