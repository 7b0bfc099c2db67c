//! A throw-away "host" for each test: a fresh network namespace standing in for the root
//! one (so the machine's own interfaces never see a packet), its own netns directory, a
//! fake internet behind an uplink veth, and cleanup that runs even when the test panics.
#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hearth_net::testnet::Internet;
use hearth_net::{netns, HostOpts, Network, Range, WorkstationId};

/// The uplink veth's root-side name, and the documentation-range addresses of both ends.
pub const UPLINK: &str = "up0";
pub const HOST_ADDR: &str = "203.0.113.2/24";
pub const INTERNET_ADDR: &str = "203.0.113.1/24";

pub struct Host {
    pub dir: PathBuf,
    pub net: Network,
    pub internet: Internet,
}

impl Host {
    pub fn internet_ns(&self) -> std::fs::File {
        netns::open(self.internet.path()).unwrap()
    }
    pub fn opts(&self) -> HostOpts {
        HostOpts { uplink: UPLINK.into(), dns: vec![], allow: vec![], forward: true }
    }
    /// A netns file of the test's own (not `hearth-*`: not in the inventory).
    pub fn make_ns(&self, name: &str) -> PathBuf {
        let p = self.dir.join(name);
        netns::create(&p).unwrap();
        p
    }
}

/// Runs `f` with a fresh host; then tears down whatever workstations are left, deletes the
/// internet and test namespaces, unmounts and removes the netns directory.
pub fn with_host<T: Send>(name: &str, f: impl FnOnce(&Host) -> T + Send) -> T {
    let out = netns::run_in_new(|| {
        let dir = PathBuf::from(format!("/run/hearth-net-test/{name}-{}", std::process::id()));
        let internet = Internet::create(&dir.join("internet"), UPLINK, HOST_ADDR.parse().unwrap(), INTERNET_ADDR.parse().unwrap()).unwrap();
        let net = Network::new(Range::default(), &dir).unwrap();
        let host = Host { dir, net, internet };
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&host)));
        cleanup(&host);
        r
    })
    .unwrap();
    out.unwrap_or_else(|p| std::panic::resume_unwind(p))
}

fn cleanup(host: &Host) {
    if let Ok(inv) = host.net.list() {
        for id in inv.workstations() {
            let _ = host.net.teardown(&id);
        }
    }
    for e in std::fs::read_dir(&host.dir).into_iter().flatten().flatten() {
        let _ = netns::delete(&e.path());
    }
    let _ = nix::mount::umount2(&host.dir, nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir(&host.dir);
    let _ = std::fs::remove_dir("/run/hearth-net-test");
}

pub fn id(n: u32) -> WorkstationId {
    WorkstationId::new(&format!("w{n:012x}")).unwrap()
}

/// A TCP listener made inside netns `ns` answering every connection with the peer's
/// address, until the returned flag is set (polling: no thread stays blocked in accept).
pub fn serve(ns: &Path, addr: &str) -> Arc<AtomicBool> {
    let f = netns::open(ns).unwrap();
    let addr: SocketAddr = addr.parse().unwrap();
    let l = netns::run_in(f.as_fd(), || TcpListener::bind(addr)).unwrap().unwrap();
    l.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((mut c, peer)) => {
                    let _ = c.set_nonblocking(false);
                    let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut buf = [0u8; 256];
                    let _ = c.read(&mut buf);
                    let _ = write!(c, "HTTP/1.0 200 OK\r\n\r\n{}", peer.ip());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    stop
}

/// From inside netns `ns`: an HTTP request to `to`; the body (the source address the
/// server saw) or why not.
pub fn fetch(ns: &Path, to: &str) -> Result<String, std::io::Error> {
    let f = netns::open(ns).map_err(std::io::Error::other)?;
    let to: SocketAddr = to.parse().map_err(std::io::Error::other)?;
    netns::run_in(f.as_fd(), || {
        let mut c = TcpStream::connect_timeout(&to, DROPPED)?;
        c.set_read_timeout(Some(Duration::from_secs(2)))?;
        c.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
        let mut s = String::new();
        c.read_to_string(&mut s)?;
        Ok(s.split("\r\n\r\n").nth(1).unwrap_or_default().to_string())
    })
    .map_err(std::io::Error::other)?
}

/// Dropped packets never answer: 700 ms is ages on a veth.
pub const DROPPED: Duration = Duration::from_millis(700);

/// A UDP socket bound inside netns `ns`, to see which datagrams arrive and from where.
pub fn udp_listen(ns: &Path, addr: &str) -> UdpSocket {
    let f = netns::open(ns).unwrap();
    let addr: SocketAddr = addr.parse().unwrap();
    let s = netns::run_in(f.as_fd(), || UdpSocket::bind(addr)).unwrap().unwrap();
    s.set_read_timeout(Some(DROPPED)).unwrap();
    s
}

/// Sends one datagram from netns `ns` to `to`, from source address `src` whether or not it
/// is local there (IP_TRANSPARENT: how a guest would forge one), and says from where it
/// arrived at `rx`, if it did. One-way, so no reply route is needed.
pub fn udp_probe(ns: &Path, src: &str, to: &str, rx: &UdpSocket) -> Option<String> {
    use nix::sys::socket::{bind, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};
    let f = netns::open(ns).unwrap();
    let src: SocketAddrV4 = format!("{src}:0").parse().unwrap();
    let to: SocketAddr = to.parse().unwrap();
    netns::run_in(f.as_fd(), || {
        let fd = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None).unwrap();
        setsockopt(&fd, sockopt::IpTransparent, &true).unwrap();
        bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(src)).unwrap();
        UdpSocket::from(fd).send_to(b"probe", to).unwrap();
    })
    .unwrap();
    let mut buf = [0u8; 16];
    rx.recv_from(&mut buf).ok().map(|(_, from)| from.ip().to_string())
}

/// Everything in the calling thread's namespace as independent tools print it (not this
/// crate's netlink code): links, IPv4 addresses, IPv4 routes of all tables, the nft ruleset
/// without counters. For before/after comparisons. (IPv6 is left out: the uplink's own
/// link-local address changes state, tentative to not, while a test runs.)
pub fn snapshot() -> Vec<String> {
    let run = |args: &[&str]| {
        let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    vec![run(&["ip", "-o", "link"]), run(&["ip", "-4", "-o", "addr"]), run(&["ip", "-4", "route", "show", "table", "all"]), run(&["nft", "-s", "list", "ruleset"])]
}
