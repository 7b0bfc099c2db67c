//! The persistent tap Firecracker opens, and per-namespace sysctls.
//!
//! Both act on the calling thread's network namespace: call them from [`crate::netns::run_in`].

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;

use crate::alloc::MAX_IFNAME;
use crate::NetError;

/// `struct ifreq` as TUNSETIFF reads it: a name and the flags (the rest of the union pads).
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

fn ioctl(f: &File, req: libc::Ioctl, arg: libc::c_ulong, what: &str) -> Result<(), NetError> {
    // SAFETY: the fd is open; these TUN requests take an integer argument, passed by value.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), req, arg) };
    if r < 0 {
        return Err(NetError::io(format!("tap: {what}"))(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Creates tap `name` in the current namespace, persistent (it outlives this fd, until its
/// namespace goes) and owned by `uid`/`gid`: jailed Firecracker runs as the workstation's
/// own uid without CAP_NET_ADMIN, and the kernel lets only the owner attach to a tap.
pub(crate) fn create_persistent(name: &str, uid: u32, gid: u32) -> Result<(), NetError> {
    if name.is_empty() || name.len() > MAX_IFNAME {
        return Err(NetError::Invalid(format!("tap name {name:?}")));
    }
    let f = OpenOptions::new().read(true).write(true).open("/dev/net/tun").map_err(NetError::io("opening /dev/net/tun"))?;
    let mut req = IfReq { name: [0; libc::IFNAMSIZ], flags: (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short, _pad: [0; 22] };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads and writes one ifreq, which `req` is (40 bytes, C layout).
    let r = unsafe { libc::ioctl(f.as_raw_fd(), libc::TUNSETIFF, &mut req as *mut IfReq) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        // EBUSY: a tap of that name exists and is attached; EEXIST-like for our callers.
        return Err(match e.raw_os_error() {
            Some(libc::EBUSY) | Some(libc::EEXIST) => NetError::Exists { what: format!("tap {name}") },
            _ => NetError::io(format!("tap: creating {name}"))(e),
        });
    }
    ioctl(&f, libc::TUNSETOWNER, uid.into(), "setting the owner")?;
    ioctl(&f, libc::TUNSETGROUP, gid.into(), "setting the group")?;
    ioctl(&f, libc::TUNSETPERSIST, 1, "making it persistent")
}

/// Sets a net sysctl (`key` below /proc/sys/net/, like `ipv4/ip_forward`). /proc/sys/net
/// shows the namespace of the thread that opens it, so this acts on the caller's.
pub(crate) fn sysctl(key: &str, value: &str) -> Result<(), NetError> {
    let path = format!("/proc/sys/net/{key}");
    let mut f = OpenOptions::new().write(true).open(&path).map_err(NetError::io(format!("opening {path}")))?;
    f.write_all(value.as_bytes()).map_err(NetError::io(format!("writing {path}")))
}

/// Turns IPv6 off on link `ifname` of the current namespace: workstations are IPv4-only, and
/// a link-local address would be one more path (and NDP one more protocol) between a
/// workstation's namespace and the host. A kernel without IPv6 has nothing to turn off.
pub(crate) fn no_ipv6(ifname: &str) -> Result<(), NetError> {
    if !std::path::Path::new("/proc/sys/net/ipv6").exists() {
        return Ok(());
    }
    sysctl(&format!("ipv6/conf/{ifname}/disable_ipv6"), "1")
}
