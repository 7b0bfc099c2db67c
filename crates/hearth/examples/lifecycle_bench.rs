//! Hibernation against a cold boot, through `hearth serve`'s API, for bench/hibernate.sh. Run
//! it in the box (`hearth box run --host-bin -- target/release/examples/lifecycle_bench
//! [rounds]`), where `hearth` is on PATH. Prints JSON.
//!
//! In one run, on one workstation (2 vCPUs, 512 MiB, a bash terminal with a screenful in it):
//! - hibernate: `POST …/hibernate` until it answers (guest disks synced, snapshot written and
//!   synced, Firecracker ended), the snapshot's size on disk, and the Firecracker's RSS just
//!   before (what the host gets back);
//! - wake to the first byte: a WebSocket attach to the hibernated workstation's terminal (the
//!   attach wakes it) until its replay arrives, then until a key's echo comes back (the shell
//!   is live);
//! - the peer, a cold boot: `POST …/stop`, `POST …/start` (it answers once the agent is up),
//!   open a terminal and attach until its first byte, then the same key's echo.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::Message;

#[path = "bench_common/mod.rs"]
mod bench_common;
use bench_common::{authorization, call, ms, start, stats, TOKEN};

type Sock = tungstenite::WebSocket<MaybeTlsStream<std::net::TcpStream>>;

fn connect(url: &str) -> Sock {
    use tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("authorization", authorization().parse().unwrap());
    let (sock, _) = tungstenite::connect(req).unwrap_or_else(|e| panic!("{url}: {e}"));
    if let MaybeTlsStream::Plain(s) = sock.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    }
    sock
}

/// Reads until a binary frame holding `want` (any binary frame when empty) arrives.
fn read_until(sock: &mut Sock, want: &str) {
    loop {
        match sock.read().unwrap_or_else(|e| panic!("waiting for {want:?}: {e}")) {
            Message::Binary(b) if want.is_empty() || String::from_utf8_lossy(&b).contains(want) => return,
            _ => {}
        }
    }
}

/// Attaches to a terminal: (ms to its first byte, ms more until a typed marker echoes).
fn attach(url: &str, marker: &str) -> (f64, f64) {
    let t = Instant::now();
    let mut sock = connect(url);
    read_until(&mut sock, "");
    let first = ms(t.elapsed());
    let t = Instant::now();
    sock.send(Message::Binary(format!("echo {marker}\r").into_bytes().into())).unwrap();
    read_until(&mut sock, marker);
    let echo = ms(t.elapsed());
    let _ = sock.close(None);
    (first, echo)
}

/// Resident memory of the workstation's Firecracker, MiB (0 when none runs).
fn vmm_rss_mib(vm_dir: &Path) -> f64 {
    let Some(vm) = hearth_vmm::vm::Vm::attach(vm_dir) else { return 0.0 };
    let status = std::fs::read_to_string(format!("/proc/{}/status", vm.pid())).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")?.trim().trim_end_matches("kB").trim().parse::<f64>().ok()).unwrap_or(0.0) / 1024.0
}

/// Bytes the files under `dir` take on disk (allocated blocks: sparse parts do not count).
fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir).into_iter().flatten().flatten().filter_map(|e| e.metadata().ok()).map(|m| m.blocks() * 512).sum()
}

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    let data = PathBuf::from(std::env::var("HEARTH_DATA_DIR").expect("HEARTH_DATA_DIR (run in the box)")).join("lifecycle-bench");
    let _ = std::fs::remove_dir_all(&data);
    let (_server, line) = start(
        Command::new("hearth").args(["serve", "--listen", "127.0.0.1:0"]).env("HEARTH_DATA_DIR", &data).env("HEARTH_LOG", "warn").env("HEARTH_IDLE__HIBERNATE_AFTER_SECS", "0"),
    );
    let base = line.strip_prefix("hearth: serving on ").unwrap_or_else(|| panic!("{line}")).to_string();
    let _ = TOKEN.set(std::fs::read_to_string(data.join("admin.token")).expect("the server's administrator token").trim().to_string());
    let api = format!("{base}/api/v1");
    let ws = call("POST", &format!("{api}/workstations"), Some(json!({"name": "bench", "vcpu_count": 2, "mem_size_mib": 512, "disk_size_gib": 1})));
    let id = ws["id"].as_str().unwrap_or_else(|| panic!("{ws}")).to_string();
    let one = format!("{api}/workstations/{id}");
    let vm_dir = data.join("workstations").join(&id).join("vm");
    let snapshot = data.join("workstations").join(&id).join("snapshot");
    let terminal = |_: ()| {
        let t = call("POST", &format!("{one}/terminals"), Some(json!({"argv": ["bash", "-l"], "rows": 40, "cols": 120})));
        format!("{}/terminals/{}/ws", one.replace("http://", "ws://"), t["id"].as_str().unwrap())
    };
    let url = terminal(());
    // A screenful in it, and the shell settled, before the first measure.
    attach(&url, "warm");
    let started = Instant::now();
    let phase = |what: &str| eprintln!("lifecycle_bench: {what} at {:.1} s", started.elapsed().as_secs_f64());

    let (mut hibernate, mut first, mut echo, mut rss, mut snap) = (vec![], vec![], vec![], vec![], vec![]);
    for i in 0..rounds {
        rss.push(vmm_rss_mib(&vm_dir));
        let t = Instant::now();
        let w = call("POST", &format!("{one}/hibernate"), None);
        hibernate.push(ms(t.elapsed()));
        assert_eq!(w["state"], "hibernated", "{w}");
        assert_eq!(vmm_rss_mib(&vm_dir), 0.0, "a Firecracker runs while hibernated");
        snap.push(disk_bytes(&snapshot) as f64 / f64::from(1 << 20));
        // Where the hibernation's time went, as its event says.
        let said = call("GET", &format!("{one}/events?limit=1"), None);
        let (f, e) = attach(&url, &format!("woke-{i}"));
        first.push(f);
        echo.push(e);
        phase(&format!("wake {i} (hibernated: {})", said["events"][0]["message"].as_str().unwrap_or_default()));
    }
    let (mut cold_start, mut cold_first, mut cold_echo) = (vec![], vec![], vec![]);
    for i in 0..rounds.div_ceil(4) {
        call("POST", &format!("{one}/stop"), None);
        let t = Instant::now();
        call("POST", &format!("{one}/start"), None);
        cold_start.push(ms(t.elapsed()));
        let url = terminal(());
        let before_attach = ms(t.elapsed());
        let (f, e) = attach(&url, &format!("booted-{i}"));
        cold_first.push(before_attach + f);
        cold_echo.push(e);
        phase(&format!("cold boot {i}"));
    }
    let out: Value = json!({
        "workstation": {"vcpus": 2, "mem_mib": 512},
        "hibernate": stats(hibernate),
        "vmm_rss_before_hibernate_mib": stats(rss),
        "snapshot_on_disk_mib": stats(snap),
        "wake_attach_to_first_byte": stats(first),
        "wake_then_key_to_echo": stats(echo),
        "cold_start_call": stats(cold_start),
        "cold_start_to_first_byte": stats(cold_first),
        "cold_then_key_to_echo": stats(cold_echo),
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}
