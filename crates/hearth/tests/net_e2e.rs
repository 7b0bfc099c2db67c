//! Workstation networking end to end, in the box: a real `hearth serve` (jailed Firecracker,
//! as the server runs it by default) whose uplink leads to a fake internet — a network
//! namespace made here (203.0.113.0/24, `hearth_net::testnet::Internet`) with a small HTTP
//! server in it. The box's own QEMU network stays `restrict=on`; no packet leaves the box.
//!
//! Shown: NAT egress with the masqueraded source; no way to another workstation or to the
//! host; `egress: none` reaches nothing; the configured DNS in the guest; the bandwidth limit
//! both ways (upper bound asserted, rates printed); 100 create/delete cycles leave the same
//! inventory; a server restart keeps addresses and connectivity and reconciles a missing and
//! an orphaned network; an exhausted range and bad values are refused clearly.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{assert_error, call};
use hearth_net::testnet::{self, Internet};
use hearth_net::{netns, Inventory, Network, Range, WorkstationId};
use serde_json::{json, Value};

const UPLINK: &str = "up0";
const INTERNET: &str = "203.0.113.1";
/// The host's (the box's) own address on the uplink: what NAT makes every source.
const HOST_ON_UPLINK: &str = "203.0.113.2";
const DNS: &str = "203.0.113.53";
const HTTP_PORT: u16 = 8000;
const HOST_SERVICE_PORT: u16 = 8001;
const LIMIT_MBPS: u64 = 40;
const TRANSFER: usize = 20_000_000;

/// A "host service": listening on every address of the box's root namespace.
fn host_service() {
    let l = TcpListener::bind(("0.0.0.0", HOST_SERVICE_PORT)).unwrap();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let _ = c.write_all(b"HTTP/1.0 200 OK\r\n\r\nhost-service");
        }
    });
}

fn ws_url(base: &str) -> String {
    format!("{base}/api/v1/workstations")
}

fn create(base: &str, body: Value) -> Value {
    let (s, w) = call("POST", &ws_url(base), Some(body));
    assert_eq!(s, 201, "{w}");
    w
}

fn delete(base: &str, id: &str) {
    let (s, v) = call("DELETE", &format!("{}/{id}", ws_url(base)), None);
    assert_eq!(s, 204, "{v}");
}

/// Runs Python in workstation `id` as the image's user; its stdout (asserting exit 0).
fn py(base: &str, id: &str, script: &str) -> String {
    let (s, r) = call("POST", &format!("{}/{id}/exec", ws_url(base)), Some(json!({"argv": ["python3", "-c", script], "timeout_secs": 180})));
    if (s, r["exit_code"].as_i64()) != (200, Some(0)) {
        // What the guest said lately, to tell a hung guest from a failed command.
        let (_, console) = call("GET", &format!("{}/{id}/console?tail_bytes=4000", ws_url(base)), None);
        let (_, state) = call("GET", &format!("{}/{id}", ws_url(base)), None);
        panic!("exec in {id} failed: {s} {r}\nscript:\n{script}\nworkstation: {state}\nconsole tail:\n{}", console.as_str().unwrap_or_default());
    }
    r["stdout"].as_str().unwrap().trim().to_string()
}

/// Python that tries TCP to each `host:port` (3 s), printing `open:<reply>`, `timeout`
/// (silently dropped) or `error:<why>` per line.
fn probes(targets: &[String]) -> String {
    let list = targets.iter().map(|t| format!("{t:?}")).collect::<Vec<_>>().join(",");
    format!(
        "import socket\n\
         for t in [{list}]:\n\
         \x20   h, p = t.rsplit(':', 1); s = socket.socket(); s.settimeout(3)\n\
         \x20   try:\n\
         \x20       s.connect((h, int(p))); s.sendall(b'GET /ip HTTP/1.0\\r\\n\\r\\n'); d = b''\n\
         \x20       while True:\n\
         \x20           b = s.recv(4096)\n\
         \x20           if not b: break\n\
         \x20           d += b\n\
         \x20       print('open:' + d.decode(errors='replace').split('\\r\\n\\r\\n', 1)[-1])\n\
         \x20   except socket.timeout: print('timeout')\n\
         \x20   except OSError as e: print('error:' + str(e))\n"
    )
}

/// Times a download of `n` bytes and an upload of as many; (down, up) in bytes/s.
fn transfer_rates(base: &str, id: &str, n: usize) -> (f64, f64) {
    let out = py(base, id, &testnet::transfer_script(&format!("http://{INTERNET}:{HTTP_PORT}"), n));
    testnet::transfer_rates(&out, n).unwrap()
}

/// The inventory now, its nat set sorted (nft lists a set in its own order).
fn inventory_of(net: &Network) -> Inventory {
    let mut i = net.list().unwrap();
    i.nat_ifaces.sort();
    i
}

fn counts(i: &Inventory) -> [usize; 5] {
    [i.netns.len(), i.links.len(), i.addresses.len(), i.routes.len(), i.nat_ifaces.len()]
}

/// From the box's root namespace or the internet's: does a TCP connect to `to` succeed?
fn connects_from(ns: Option<&Path>, to: &str) -> bool {
    let to: SocketAddr = to.parse().unwrap();
    let go = move || TcpStream::connect_timeout(&to, Duration::from_secs(3)).is_ok();
    match ns {
        None => go(),
        Some(p) => netns::run_in(netns::open(p).unwrap().as_fd(), go).unwrap(),
    }
}

fn env(range: &str) -> Vec<(&'static str, String)> {
    vec![
        ("HEARTH_NETWORK__ENABLED", "true".into()),
        ("HEARTH_NETWORK__UPLINK", UPLINK.into()),
        ("HEARTH_NETWORK__DNS", format!("[\"{DNS}\"]")),
        ("HEARTH_NETWORK__RANGE", range.into()),
        ("HEARTH_LIMITS__MEM_BUDGET_MIB", "3072".into()),
    ]
}

fn serve(data: &Path, env: &[(&'static str, String)]) -> common::Server {
    let e: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    common::serve_in_box_with(data, &e)
}

#[test]
fn workstations_get_nat_isolation_limits_and_survive_restarts() {
    if common::delegated_to_box("workstations_get_nat_isolation_limits_and_survive_restarts") {
        return;
    }
    let data_root = PathBuf::from(std::env::var("HEARTH_DATA_DIR").unwrap());
    let inet_ns = PathBuf::from(format!("/run/netns/e2e-internet-{}", std::process::id()));
    let internet = Internet::create(&inet_ns, UPLINK, format!("{HOST_ON_UPLINK}/24").parse().unwrap(), format!("{INTERNET}/24").parse().unwrap()).unwrap();
    internet.add_addresses(&[format!("{DNS}/32").parse().unwrap()]).unwrap();
    let l = netns::run_in(netns::open(&inet_ns).unwrap().as_fd(), || TcpListener::bind((INTERNET, HTTP_PORT))).unwrap().unwrap();
    std::thread::spawn(move || testnet::http_serve(l));
    host_service();
    // Positive controls: the host service answers locally and from the internet side.
    assert!(connects_from(None, &format!("127.0.0.1:{HOST_SERVICE_PORT}")));
    assert!(connects_from(Some(&inet_ns), &format!("{HOST_ON_UPLINK}:{HOST_SERVICE_PORT}")));
    let inventory = Network::new(Range::default(), hearth_net::NETNS_DIR).unwrap();
    let empty = inventory_of(&inventory);
    assert!(empty.is_empty(), "{empty:?}");

    let data = data_root.join(format!("net-{}", std::process::id()));
    let env16 = env(hearth_net::alloc::DEFAULT_RANGE);
    let server = serve(&data, &env16);
    let base = server.base.clone();
    let small = |name: &str, extra: Value| {
        let mut b = json!({"name": name, "mem_size_mib": 512, "vcpu_count": 1, "read_only": true});
        b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        b
    };
    let t = Instant::now();
    let a = create(&base, small("a", json!({"bandwidth": {"rx_mbps": LIMIT_MBPS, "tx_mbps": LIMIT_MBPS}})));
    let b = create(&base, small("b", json!({})));
    let c = create(&base, small("c", json!({"egress": "none"})));
    eprintln!("three workstations created and booted in {:.1} s", t.elapsed().as_secs_f64());
    let (ida, idb, idc) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap(), c["id"].as_str().unwrap());
    let addr = |w: &Value| w["address"].as_str().unwrap().to_string();
    assert_eq!((addr(&a).as_str(), addr(&b).as_str(), addr(&c).as_str()), ("10.200.0.2", "10.200.0.10", "10.200.0.18"));
    assert_eq!((a["egress"].as_str(), b["egress"].as_str(), c["egress"].as_str()), (Some("nat"), Some("nat"), Some("none")));

    // The guest has the address the API shows, and the configured resolver.
    let me = "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect(('203.0.113.1', 9)); print(s.getsockname()[0])";
    assert_eq!(py(&base, ida, me), addr(&a));
    assert_eq!(py(&base, ida, "print(open('/etc/resolv.conf').read())").lines().filter(|l| l.starts_with("nameserver")).collect::<Vec<_>>(), [format!("nameserver {DNS}")]);

    // NAT: the internet answers and sees the host's uplink address as the source.
    let internet_http = format!("{INTERNET}:{HTTP_PORT}");
    assert_eq!(py(&base, ida, &probes(std::slice::from_ref(&internet_http))), format!("open:{HOST_ON_UPLINK}"));

    // Another workstation: B listens on its address (it reaches itself there), A gets nothing.
    py(&base, idb, "import subprocess; subprocess.Popen(['python3', '-m', 'http.server', '9000'], start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)");
    let b_service = format!("{}:9000", addr(&b));
    let wait_b = format!(
        "import socket, time\nfor _ in range(100):\n    try:\n        socket.create_connection(('{}', 9000), 1).close(); print('up'); break\n    except OSError: time.sleep(0.2)\n",
        addr(&b)
    );
    assert_eq!(py(&base, idb, &wait_b), "up");
    // The host: its uplink address, its address on the box's own network, A's veth host end.
    let a_host_end = format!("{}:{HOST_SERVICE_PORT}", std::net::Ipv4Addr::from(u32::from(addr(&a).parse::<std::net::Ipv4Addr>().unwrap()) + 3));
    let blocked = [b_service.clone(), format!("{HOST_ON_UPLINK}:{HOST_SERVICE_PORT}"), format!("10.0.2.15:{HOST_SERVICE_PORT}"), a_host_end, "169.254.169.254:80".to_string()];
    let from_a = py(&base, ida, &probes(&blocked));
    assert_eq!(from_a.lines().collect::<Vec<_>>(), ["timeout"; 5], "from A to {blocked:?}");
    // egress none: not the internet, not the host, not B.
    let from_c = py(&base, idc, &probes(&[internet_http.clone(), format!("{HOST_ON_UPLINK}:{HOST_SERVICE_PORT}"), b_service.clone()]));
    assert_eq!(from_c.lines().collect::<Vec<_>>(), ["timeout"; 3]);

    // Bandwidth: A is limited both ways, B is not (its rates are for comparison only).
    let limit = LIMIT_MBPS as f64 * 125_000.0;
    let (down, up) = transfer_rates(&base, ida, TRANSFER);
    let (free_down, free_up) = transfer_rates(&base, idb, TRANSFER);
    let mb = |r: f64| r / 1e6;
    eprintln!(
        "bandwidth: limit {:.2} MB/s each way; A (limited) down {:.2} MB/s ({:.2}x), up {:.2} MB/s ({:.2}x); B (unlimited) down {:.2} MB/s, up {:.2} MB/s",
        mb(limit),
        mb(down),
        down / limit,
        mb(up),
        up / limit,
        mb(free_down),
        mb(free_up)
    );
    assert!(down <= 1.2 * limit && up <= 1.2 * limit, "over the limit: down {down:.0} B/s, up {up:.0} B/s, limit {limit:.0} B/s");

    // 100 create/delete cycles (not started: networks only) leave the same inventory.
    let before = inventory_of(&inventory);
    assert_eq!(counts(&before), [3, 3, 3, 6, 2], "{before:?}");
    let t = Instant::now();
    for n in 0..100 {
        let egress = if n % 2 == 0 { "nat" } else { "none" };
        let w = create(&base, small(&format!("cycle-{n}"), json!({"start": false, "egress": egress})));
        if n < 2 {
            let during = inventory_of(&inventory);
            assert_eq!(counts(&during), [4, 4, 4, 8, 2 + usize::from(n == 0)], "{during:?}");
        }
        delete(&base, w["id"].as_str().unwrap());
    }
    eprintln!("100 create/delete cycles through the API: {:.0} ms each", t.elapsed().as_secs_f64() * 10.0);
    assert_eq!(inventory_of(&inventory), before);

    // Restart: B stopped, the server killed; meanwhile B's network vanishes (as after a host
    // reboot) and a stray one appears. The next server sets B's up again, removes the stray.
    let (s, _) = call("POST", &format!("{}/{idb}/stop", ws_url(&base)), None);
    assert_eq!(s, 200);
    drop(server);
    inventory.teardown(&WorkstationId::new(idb).unwrap()).unwrap();
    let stray = WorkstationId::new("w0000000000ff").unwrap();
    inventory.setup(&stray, 4000, &hearth_net::SetupOpts { egress: hearth_net::Egress::Nat, guest: hearth_net::GuestSide::Tap { uid: 0, gid: 0 } }).unwrap();
    let server = serve(&data, &env16);
    let base = server.base.clone();
    assert_eq!(inventory_of(&inventory), before, "B's network back, the stray one gone");
    let (s, again) = call("GET", &format!("{}/{ida}", ws_url(&base)), None);
    assert_eq!((s, again["address"].as_str()), (200, Some("10.200.0.2")));
    assert_eq!(py(&base, ida, &probes(std::slice::from_ref(&internet_http))), format!("open:{HOST_ON_UPLINK}"), "A, running through the restart");
    let (s, v) = call("POST", &format!("{}/{idb}/start", ws_url(&base)), None);
    assert_eq!((s, v["address"].as_str()), (200, Some("10.200.0.10")), "{v}");
    assert_eq!(py(&base, idb, &probes(&[internet_http])), format!("open:{HOST_ON_UPLINK}"), "B, on its network made again");
    for id in [ida, idb, idc] {
        delete(&base, id);
    }
    drop(server);
    assert!(inventory_of(&inventory).is_empty(), "deletes leave nothing");

    // A one-slot range: the second create is refused, clearly; bad values name their field.
    let data29 = data_root.join(format!("net29-{}", std::process::id()));
    let server = serve(&data29, &env("10.201.0.0/29"));
    let base = server.base.clone();
    let one = create(&base, small("only", json!({"start": false})));
    assert_eq!(one["address"].as_str(), Some("10.201.0.2"));
    let refused = call("POST", &ws_url(&base), Some(small("second", json!({"start": false}))));
    assert!(refused.1["error"]["message"].as_str().is_some_and(|m| m.contains("10.201.0.0/29") && m.contains("all 1 workstation slots")), "{}", refused.1);
    assert_error(refused, 503, "address_range_exhausted", None);
    let bad = |extra: Value| call("POST", &ws_url(&base), Some(small("bad", extra)));
    assert_error(bad(json!({"bandwidth": {"rx_mbps": 0, "tx_mbps": 10}})), 400, "invalid_field", Some("bandwidth.rx_mbps"));
    assert_error(bad(json!({"bandwidth": {"rx_mbps": 10, "tx_mbps": -1}})), 400, "invalid_field", Some("bandwidth.tx_mbps"));
    assert_error(bad(json!({"bandwidth": {"rx_mbps": 10, "tx_mbps": 99_999_999}})), 400, "invalid_field", Some("bandwidth.tx_mbps"));
    assert_error(bad(json!({"egress": "open"})), 400, "invalid_field", Some("egress"));
    delete(&base, one["id"].as_str().unwrap());
    drop(server);

    Network::new("10.201.0.0/29".parse().unwrap(), hearth_net::NETNS_DIR).unwrap().remove_rules().unwrap();
    internet.remove().unwrap();
    assert!(inventory_of(&inventory).is_empty());
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_dir_all(&data29);
}
