//! Setup and teardown on the product path (a persistent tap): leaks, idempotence, partial
//! setups, refusals, and that the tap's owner can open it without privileges.

mod common;

use std::os::fd::AsRawFd;

use common::*;
use hearth_net::{netns, AllocError, Egress, GuestSide, NetError, SetupOpts};

fn tap(uid: u32) -> SetupOpts {
    SetupOpts { egress: Egress::Nat, guest: GuestSide::Tap { uid, gid: uid } }
}

#[test]
fn hundred_cycles_leave_the_same_inventory() {
    with_host("cycles", |h| {
        h.net.init(&h.opts()).unwrap();
        // One workstation stays up throughout: the cycles must not disturb it either.
        h.net.setup(&id(999), 0, &tap(1000)).unwrap();
        let (inv, snap) = (h.net.list().unwrap(), snapshot());
        assert_eq!((inv.netns.len(), inv.links.len(), inv.addresses.len(), inv.routes.len(), inv.nat_ifaces.len()), (1, 1, 1, 2, 1), "{inv:?}");
        let mut seen = 0;
        let (mut up, mut down) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
        for n in 0..100u32 {
            let egress = if n % 2 == 0 { Egress::Nat } else { Egress::None };
            let t = std::time::Instant::now();
            let w = h.net.setup(&id(n), 1 + n % 7, &SetupOpts { egress, ..tap(1000 + n) }).unwrap();
            up += t.elapsed();
            assert!(w.netns.exists());
            let during = h.net.list().unwrap();
            // Counted while up: one more of each (the set element only with NAT).
            assert_eq!(during.netns.len(), 2);
            assert_eq!(during.links.len(), 2);
            assert_eq!(during.addresses.len(), 2);
            assert_eq!(during.routes.len(), 4);
            assert_eq!(during.nat_ifaces.len(), 1 + usize::from(egress == Egress::Nat));
            let t = std::time::Instant::now();
            h.net.teardown(&id(n)).unwrap();
            down += t.elapsed();
            seen += 1;
        }
        eprintln!("100 cycles: setup {:?} each, teardown {:?} each (mean)", up / 100, down / 100);
        assert_eq!(seen, 100);
        assert_eq!(h.net.list().unwrap(), inv);
        // The same, as ip and nft print the whole namespace (not only hearth's objects).
        assert_eq!(snapshot(), snap);
        h.net.teardown(&id(999)).unwrap();
        assert!(h.net.list().unwrap().is_empty());
    });
}

#[test]
fn teardown_is_idempotent_and_handles_partial_setups() {
    with_host("partial", |h| {
        h.net.init(&h.opts()).unwrap();
        let empty = h.net.list().unwrap();
        assert!(empty.is_empty(), "{empty:?}");
        // Never set up, then twice after a full setup.
        h.net.teardown(&id(1)).unwrap();
        h.net.setup(&id(1), 1, &tap(1000)).unwrap();
        h.net.teardown(&id(1)).unwrap();
        h.net.teardown(&id(1)).unwrap();
        assert_eq!(h.net.list().unwrap(), empty);

        // A setup failing part-way (its guest netns is missing, found only after the netns,
        // veth, addresses and routes inside are made) unwinds what it made.
        let missing = h.dir.join("no-such-guest");
        let err = h.net.setup(&id(2), 2, &SetupOpts { egress: Egress::Nat, guest: GuestSide::Veth { guest: missing } }).unwrap_err();
        assert!(matches!(err, NetError::Io { .. }), "{err}");
        assert_eq!(h.net.list().unwrap(), empty);

        // What a crash could leave: only the netns; or everything but the netns file.
        netns::create(&h.net.netns_path(&id(3))).unwrap();
        assert_eq!(h.net.list().unwrap().workstations().len(), 1);
        h.net.teardown(&id(3)).unwrap();
        h.net.setup(&id(4), 4, &tap(1000)).unwrap();
        netns::delete(&h.net.netns_path(&id(4))).unwrap();
        h.net.teardown(&id(4)).unwrap();
        assert_eq!(h.net.list().unwrap(), empty);
    });
}

#[test]
fn refusals_are_typed_and_change_nothing() {
    with_host("refusals", |h| {
        // Before init: refused, so no workstation is ever unfiltered.
        assert!(matches!(h.net.setup(&id(1), 1, &tap(1000)), Err(NetError::NotInitialized)));
        assert!(matches!(h.net.set_egress(&id(1), Egress::Nat), Err(NetError::NotInitialized)));
        h.net.set_egress(&id(1), Egress::None).unwrap();
        let bad = hearth_net::HostOpts { uplink: "up*".into(), ..h.opts() };
        assert!(matches!(h.net.init(&bad), Err(NetError::Invalid(_))));
        h.net.init(&h.opts()).unwrap();
        assert!(h.net.list().unwrap().is_empty());

        h.net.setup(&id(1), 1, &tap(1000)).unwrap();
        let before = h.net.list().unwrap();
        // The same workstation again; another one in its slot; a slot past the range.
        let again = h.net.setup(&id(1), 1, &tap(1000)).unwrap_err();
        assert!(matches!(&again, NetError::Exists { what } if what.contains("hv000000000001")), "{again}");
        let slot = h.net.setup(&id(2), 1, &tap(1000)).unwrap_err();
        assert!(matches!(&slot, NetError::Exists { what } if what.contains("slot 1")), "{slot}");
        let past = h.net.setup(&id(3), 8192, &tap(1000)).unwrap_err();
        assert!(matches!(past, NetError::Alloc(AllocError::NoSuchSlot { slot: 8192, slots: 8192 })), "{past}");
        assert_eq!(h.net.list().unwrap(), before);
        h.net.teardown(&id(1)).unwrap();
    });
}

/// Opens `tap0` in `ns` as `uid` (no capabilities), the way jailed Firecracker does: the
/// device node is opened first (the jailer makes one the uid may open), TUNSETIFF decides.
fn attach_as(ns: &std::path::Path, uid: u32) -> std::io::Result<()> {
    let f = netns::open(ns).map_err(std::io::Error::other)?;
    netns::run_in(std::os::fd::AsFd::as_fd(&f), || {
        let tun = std::fs::OpenOptions::new().read(true).write(true).open("/dev/net/tun")?;
        // Raw syscalls change this thread's ids only (glibc's setresuid would change every
        // thread's); dropping root this way also drops its capabilities.
        // SAFETY: plain syscalls with integer arguments.
        let r = unsafe { libc::syscall(libc::SYS_setresgid, uid, uid, uid) | libc::syscall(libc::SYS_setresuid, uid, uid, uid) };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut req = [0u8; 40];
        req[..4].copy_from_slice(b"tap0");
        req[16..18].copy_from_slice(&((libc::IFF_TAP | libc::IFF_NO_PI) as i16).to_ne_bytes());
        // SAFETY: TUNSETIFF reads and writes a 40-byte struct ifreq.
        if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, req.as_mut_ptr()) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    })
    .map_err(std::io::Error::other)?
}

#[test]
fn the_tap_belongs_to_the_workstation_uid() {
    with_host("tapowner", |h| {
        h.net.init(&h.opts()).unwrap();
        let w = h.net.setup(&id(1), 1, &tap(54321)).unwrap();
        assert_eq!(w.tap, "tap0");
        assert_eq!(w.mac, "02:68:00:00:00:01");
        let other = attach_as(&w.netns, 54322).unwrap_err();
        assert_eq!(other.raw_os_error(), Some(libc::EPERM), "{other}");
        attach_as(&w.netns, 54321).unwrap();
        h.net.teardown(&id(1)).unwrap();
    });
}
