//! Workstation networking figures for bench/net.sh. Run it in the box:
//! `hearth box run --host-bin -- target/release/examples/net_bench [cycles] [bytes]`. Prints JSON.
//!
//! Measures, in the box's root namespace with a fake internet behind the uplink
//! (`hearth_net::testnet`, 203.0.113.0/24; nothing leaves the box):
//! - `Network::setup` and `Network::teardown` of one workstation's network (netns, veth,
//!   addresses, routes, persistent tap, nat set element), `cycles` times;
//! - throughput of a real Firecracker guest on such a network through NAT to an HTTP server
//!   in the internet namespace (download and upload of `bytes`, Python urllib in the guest,
//!   no rate limit), and the same transfer from the box's root namespace to the internet
//!   namespace over the uplink veth alone (the peer: two plain namespaces, one veth, no VM).

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hearth_net::testnet::{self, Internet};
use hearth_net::{netns, Egress, GuestSide, HostOpts, Network, Range, SetupOpts, Slot, WorkstationId};
use hearth_proto::control::ExecSpec;
use hearth_vmm::vm::{NetConfig, Vm, VmConfig};

#[path = "common/guest.rs"]
mod guest;
#[path = "common/stats.rs"]
mod stats;
use guest::bench_vm_config;
use stats::{median, ms, p99};

fn id(n: u32) -> WorkstationId {
    WorkstationId::new(&format!("w{n:012x}")).unwrap()
}

const URL: &str = "http://203.0.113.1:8000";

fn main() {
    let arg = |i: usize| std::env::args().nth(i);
    let cycles: u32 = arg(1).and_then(|a| a.parse().ok()).unwrap_or(50);
    let bytes: usize = arg(2).and_then(|a| a.parse().ok()).unwrap_or(50_000_000);
    let inet_ns = PathBuf::from("/run/netns/bench-internet");
    let internet = Internet::create(&inet_ns, "up0", "203.0.113.2/24".parse().unwrap(), "203.0.113.1/24".parse().unwrap()).expect("the fake internet");
    let l = netns::run_in(netns::open(&inet_ns).unwrap().as_fd(), || std::net::TcpListener::bind("203.0.113.1:8000")).unwrap().unwrap();
    std::thread::spawn(move || testnet::http_serve(l));
    let net = Network::new(Range::default(), hearth_net::NETNS_DIR).unwrap();
    net.init(&HostOpts { uplink: "up0".into(), dns: vec![], allow: vec![], forward: true }).expect("nft table");

    let (mut setup, mut teardown) = (vec![], vec![]);
    let tap = SetupOpts { egress: Egress::Nat, guest: GuestSide::Tap { uid: 0, gid: 0 } };
    for n in 0..cycles {
        let t = Instant::now();
        net.setup(&id(n), n, &tap).expect("setup");
        setup.push(ms(t.elapsed()));
        let t = Instant::now();
        net.teardown(&id(n)).expect("teardown");
        teardown.push(ms(t.elapsed()));
    }

    // A guest on a network made the product's way (unjailed: the tap belongs to root).
    let root = PathBuf::from(std::env::var("HEARTH_DATA_DIR").expect("HEARTH_DATA_DIR")).join("net-bench");
    let _ = std::fs::remove_dir_all(&root);
    let w = net.setup(&id(1), 1, &tap).expect("setup for the VM");
    let cfg = VmConfig {
        network: Some(NetConfig {
            netns: Some(w.netns.clone()),
            tap: w.tap.clone(),
            guest_mac: Some(w.mac.clone()),
            address: w.slot.guest(),
            prefix: Slot::PREFIX,
            gateway: w.slot.gateway(),
            mtu: 1500,
            dns: vec![],
            rx: None,
            tx: None,
        }),
        ..bench_vm_config(1)
    };
    let vm = Vm::launch(&root, &cfg, Duration::from_secs(120)).expect("launch");
    let script = testnet::transfer_script(URL, bytes);
    let spec = ExecSpec { user: Some("scientist".into()), timeout_secs: Some(300), ..ExecSpec::new(["python3", "-c", script.as_str()]) };
    let (exit, out, err) = vm.agent(Duration::from_secs(10)).unwrap().exec_collect(spec).unwrap();
    assert_eq!(exit.status(), 0, "{}", String::from_utf8_lossy(&err));
    let (guest_down, guest_up) = testnet::transfer_rates(String::from_utf8_lossy(&out).trim(), bytes).unwrap();
    vm.kill();
    net.teardown(&id(1)).unwrap();

    let peer = std::process::Command::new("python3").args(["-c", &script]).output().expect("python3 in the box");
    assert!(peer.status.success(), "{}", String::from_utf8_lossy(&peer.stderr));
    let (peer_down, peer_up) = testnet::transfer_rates(String::from_utf8_lossy(&peer.stdout).trim(), bytes).unwrap();

    net.remove_rules().unwrap();
    internet.remove().unwrap();
    let _ = std::fs::remove_dir_all(&root);
    let mb = |r: f64| (r / 1e4).round() / 100.0;
    let r2 = |x: f64| (x * 100.0).round() / 100.0;
    println!(
        "{}",
        serde_json::json!({
            "cycles": cycles,
            "setup_ms": {"p50": r2(median(setup.clone())), "p99": r2(p99(setup))},
            "teardown_ms": {"p50": r2(median(teardown.clone())), "p99": r2(p99(teardown))},
            "bytes": bytes,
            "guest_nat_MBps": {"download": mb(guest_down), "upload": mb(guest_up)},
            "peer_root_to_internet_ns_MBps": {"download": mb(peer_down), "upload": mb(peer_up)},
        })
    );
}
