//! Real packets through real rules, all inside the test's own namespaces: two workstations
//! and one with egress `none`, a fake internet behind the uplink, a "host service" in the
//! test's root namespace. Every "not reachable" has a positive control showing the
//! listener is there and answering for someone else.

mod common;

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use common::*;
use hearth_net::{Allow, Egress, GuestSide, HostOpts, SetupOpts};

struct Ws {
    guest: PathBuf,
}

fn workstation(h: &Host, n: u32, egress: Egress) -> Ws {
    let guest = h.make_ns(&format!("guest-{n}"));
    h.net.setup(&id(n), n, &SetupOpts { egress, guest: GuestSide::Veth { guest: guest.clone() } }).unwrap();
    Ws { guest }
}

fn ok(r: std::io::Result<String>) -> String {
    r.unwrap_or_else(|e| panic!("expected a connection: {e}"))
}

/// Silently dropped (the rules drop, they do not reject): the connect times out. Any other
/// error (unreachable, refused) would not be the firewall's doing.
fn blocked(r: std::io::Result<String>, what: &str) {
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
        other => panic!("{what}: expected a silent drop, got {other:?}"),
    }
}

#[test]
fn nat_egress_isolation_and_switching() {
    with_host("traffic", |h| {
        // Extra internet-side addresses in private space: a "LAN resolver" and an allowed service.
        let inet = h.internet.path().to_path_buf();
        let opts = HostOpts { dns: vec!["10.99.0.53".parse().unwrap()], allow: vec![Allow { net: "10.99.0.54/32".parse().unwrap(), port: Some(8080) }], ..h.opts() };
        h.net.init(&opts).unwrap();
        let (a, b, c) = (workstation(h, 1, Egress::Nat), workstation(h, 2, Egress::Nat), workstation(h, 3, Egress::None));
        let slot = |n| h.net.range().slot(n).unwrap();
        h.internet.add_addresses(&["10.99.0.53/32".parse().unwrap(), "10.99.0.54/32".parse().unwrap()]).unwrap();
        let root = h.dir.join("root");
        hearth_net::netns::bind_current(&root).unwrap();
        let stops = [
            serve(&inet, "203.0.113.1:80"),
            serve(&inet, "10.99.0.53:53"),
            serve(&inet, "10.99.0.53:80"),
            serve(&inet, "10.99.0.54:8080"),
            serve(&inet, "10.99.0.54:8081"),
            serve(&b.guest, "0.0.0.0:9000"),
            // The host's own service, on every address of the (test) root namespace.
            serve(&root, "0.0.0.0:8000"),
        ];

        // Through NAT, seen from the internet as the host's uplink address.
        assert_eq!(ok(fetch(&a.guest, "203.0.113.1:80")), "203.0.113.2");
        assert_eq!(ok(fetch(&b.guest, "203.0.113.1:80")), "203.0.113.2");

        // Workstation → workstation: dropped; the host itself reaches B's guest (control).
        let b_guest = format!("{}:9000", slot(2).guest());
        blocked(fetch(&a.guest, &b_guest), "B's guest from A");
        assert_eq!(ok(fetch(&root, &b_guest)), slot(2).veth_host().to_string());

        // The host's service: not from a workstation, by any host address; fine from outside.
        for addr in ["203.0.113.2:8000".to_string(), format!("{}:8000", slot(1).veth_host()), format!("{}:8000", slot(2).veth_host())] {
            blocked(fetch(&a.guest, &addr), &format!("host service {addr}"));
        }
        assert_eq!(ok(fetch(&inet, "203.0.113.2:8000")), "203.0.113.1");

        // Private destinations: only the resolver's port 53 and the allow-listed port.
        assert_eq!(ok(fetch(&a.guest, "10.99.0.53:53")), "203.0.113.2");
        blocked(fetch(&a.guest, "10.99.0.53:80"), "the resolver's port 80");
        assert_eq!(ok(fetch(&a.guest, "10.99.0.54:8080")), "203.0.113.2");
        blocked(fetch(&a.guest, "10.99.0.54:8081"), "a port not allowed");
        assert_eq!(ok(fetch(&root, "10.99.0.53:80")), "203.0.113.2");
        assert_eq!(ok(fetch(&root, "10.99.0.54:8081")), "203.0.113.2");

        // A spoofed source (B's guest address, or an outside one, sent from A) is dropped;
        // A's own passes, masqueraded.
        let rx = udp_listen(&inet, "203.0.113.1:5000");
        let (a_ip, b_ip) = (slot(1).guest().to_string(), slot(2).guest().to_string());
        assert_eq!(udp_probe(&a.guest, &a_ip, "203.0.113.1:5000", &rx).as_deref(), Some("203.0.113.2"));
        assert_eq!(udp_probe(&a.guest, &b_ip, "203.0.113.1:5000", &rx), None, "spoofed as B");
        assert_eq!(udp_probe(&a.guest, "198.51.100.7", "203.0.113.1:5000", &rx), None, "spoofed as outside");

        // Egress none reaches nothing: not the internet, the resolver, the host, A.
        for to in ["203.0.113.1:80".to_string(), "10.99.0.53:53".into(), "203.0.113.2:8000".into(), format!("{}:8000", slot(3).veth_host())] {
            blocked(fetch(&c.guest, &to), &format!("{to} with egress none"));
        }

        // Switching egress is one set element; the inventory shows it.
        let nat = |h: &Host| h.net.list().unwrap().nat_ifaces;
        assert_eq!(nat(h), vec![id(1).host_veth(), id(2).host_veth()]);
        h.net.set_egress(&id(3), Egress::Nat).unwrap();
        h.net.set_egress(&id(1), Egress::None).unwrap();
        assert_eq!(nat(h), vec![id(2).host_veth(), id(3).host_veth()]);
        assert_eq!(ok(fetch(&c.guest, "203.0.113.1:80")), "203.0.113.2");
        blocked(fetch(&a.guest, "203.0.113.1:80"), "the internet after switching A to none");

        // Re-init replaces the table atomically and keeps each workstation's egress.
        h.net.init(&h.opts()).unwrap();
        assert_eq!(nat(h), vec![id(2).host_veth(), id(3).host_veth()]);
        assert_eq!(ok(fetch(&c.guest, "203.0.113.1:80")), "203.0.113.2");
        // …with the new options: the allow list is gone.
        blocked(fetch(&c.guest, "10.99.0.54:8080"), "a port no longer allowed");
        // An allow entry opens a host's own address too (input chain), only that port.
        let host_svc = Allow { net: "203.0.113.2/32".parse().unwrap(), port: Some(8000) };
        h.net.init(&HostOpts { allow: vec![host_svc], ..h.opts() }).unwrap();
        assert_eq!(ok(fetch(&c.guest, "203.0.113.2:8000")), slot(3).guest().to_string());
        blocked(fetch(&c.guest, &format!("{}:8000", slot(3).veth_host())), "the host service at another address");

        // Control: without the table the same packets get through, so the rules (not the
        // topology) are what stopped them.
        h.net.remove_rules().unwrap();
        assert_eq!(ok(fetch(&a.guest, &b_guest)), slot(1).guest().to_string());
        assert_eq!(ok(fetch(&a.guest, "203.0.113.2:8000")), slot(1).guest().to_string());
        assert_eq!(udp_probe(&a.guest, &b_ip, "203.0.113.1:5000", &rx), Some(b_ip.clone()), "spoofed, no rules");

        for s in stops {
            s.store(true, Ordering::Relaxed);
        }
        for n in 1..=3 {
            h.net.teardown(&id(n)).unwrap();
        }
        assert!(h.net.list().unwrap().is_empty());
    });
}
