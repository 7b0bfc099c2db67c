//! Workstation VM timings with the real Firecracker, for bench/runtime.sh (run it in the box:
//! `hearth box run --host-bin -- target/release/examples/vm_bench [boots] [mem MiB] [disk|tmpfs]`).
//! Prints JSON.
//!
//! Measures, per boot: launch (spawn → configure → InstanceStart → agent ready), exec round
//! trips through the agent (vsock connect + hello + `true` + exit), the same command run
//! locally in the box in the same run (the floor), Firecracker's RSS with the guest idle, and
//! a clean stop; then restores of a full snapshot into fresh Firecracker processes (spawn →
//! load → the agent answers hello); then keystroke echo round trips on a terminal session
//! (`cat` on a raw PTY): through the guest agent over vsock, through the same server code on a
//! unix socket in the box, and on a bare local PTY in the box (the floor).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use std::io::{Read, Write};
use std::sync::Arc;

use hearth_exec::server::{serve_incoming, ConnLimit, ServerConfig};
use hearth_exec::ExecClient;
use hearth_image::{refs, Cache};
use hearth_proto::control::ExecSpec;
use hearth_vmm::vm::{create_ext4_disk, Overlay, Vm, VmConfig};

#[path = "common/echo.rs"]
mod echo;
#[path = "common/stats.rs"]
mod stats;
use echo::{echo_through, raw_cat};
use stats::{median, ms, p99};

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn main() {
    let arg = |i: usize| std::env::args().nth(i);
    let boots: usize = arg(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let mem_mib: u32 = arg(2).and_then(|a| a.parse().ok()).unwrap_or(512);
    let tmpfs = arg(3).as_deref() == Some("tmpfs");
    let cache = Cache::new(std::env::var("HEARTH_CACHE_DIR").expect("HEARTH_CACHE_DIR (run in the box)"));
    let file = |name: &str, f: &str| cache.resolve_file(name, f).expect("artifacts built");
    let root = PathBuf::from(std::env::var("HEARTH_DATA_DIR").expect("HEARTH_DATA_DIR")).join("vm-bench");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let disk = root.join("overlay.ext4");
    create_ext4_disk(&disk, 1 << 30, Path::new("mkfs.ext4")).unwrap();
    let cfg = VmConfig {
        firecracker: file(refs::FIRECRACKER, "firecracker"),
        kernel: file(refs::GUEST_KERNEL, "vmlinux"),
        base_image: file(&refs::rootfs(refs::DEFAULT_RECIPE), "rootfs.ext4"),
        overlay: if tmpfs { Overlay::Tmpfs } else { Overlay::Disk(disk) },
        vcpus: 1,
        mem_mib,
        smt: false,
        hostname: "bench".into(),
        extra_boot_args: vec![],
        network: None,
        jail: None,
    };
    let (mut launch, mut stop, mut rss, mut exec, mut local) = (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..boots {
        let t = Instant::now();
        let vm = Vm::launch(&root.join("vm"), &cfg, Duration::from_secs(120)).expect("launch");
        launch.push(ms(t.elapsed()));
        for _ in 0..30 {
            let t = Instant::now();
            let (exit, _, _) = vm.agent(Duration::from_secs(10)).unwrap().exec_collect(ExecSpec::new(["true"])).unwrap();
            assert_eq!(exit.status(), 0);
            exec.push(ms(t.elapsed()));
            let t = Instant::now();
            assert!(Command::new("true").status().unwrap().success());
            local.push(ms(t.elapsed()));
        }
        std::thread::sleep(Duration::from_secs(2));
        rss.push(rss_kib(vm.pid()) as f64 / 1024.0);
        let t = Instant::now();
        vm.stop(Duration::from_secs(30));
        stop.push(ms(t.elapsed()));
    }
    // Snapshot restore: one read-only VM booted and snapshotted, then restored again and again
    // from the same files into fresh Firecracker processes.
    let ro = VmConfig { overlay: Overlay::Tmpfs, ..cfg.clone() };
    let vm = Vm::launch(&root.join("snap"), &ro, Duration::from_secs(120)).expect("launch for snapshot");
    let (state, mem) = (root.join("snap.state"), root.join("snap.mem"));
    vm.snapshot(&state, &mem).expect("snapshot");
    vm.kill();
    let mut restore = vec![];
    for _ in 0..boots {
        let t = Instant::now();
        let vm = Vm::restore(&root.join("snap"), &ro, &state, &mem, Duration::from_secs(60)).expect("restore");
        restore.push(ms(t.elapsed()));
        let (exit, _, _) = vm.agent(Duration::from_secs(10)).unwrap().exec_collect(ExecSpec::new(["true"])).unwrap();
        assert_eq!(exit.status(), 0);
        vm.kill();
    }
    // Keystroke echo: one byte typed, the same byte read back, N times.
    const ECHOES: usize = 500;
    let vm = Vm::launch(&root.join("pty"), &ro, Duration::from_secs(120)).expect("launch for the pty bench");
    let id = vm.agent(Duration::from_secs(10)).unwrap().pty_open(raw_cat()).unwrap().id;
    let echo_guest = echo_through(vm.agent(Duration::from_secs(10)).unwrap(), &id, ECHOES);
    vm.kill();
    let sock = root.join("local.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let cfg = ServerConfig {
        token: None,
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        on_shutdown: Box::new(|| {}),
        uptime_ms: || 0,
        capabilities: vec![],
        allow_machine_settings: false,
        ptys: Default::default(),
    };
    std::thread::spawn(move || serve_incoming(listener.incoming(), Arc::new(cfg), ConnLimit::new(8)));
    let connect_local = |sock: &Path| ExecClient::hello(std::os::unix::net::UnixStream::connect(sock).unwrap(), None, Duration::from_secs(5)).unwrap();
    let id = connect_local(&sock).pty_open(raw_cat()).unwrap().id;
    let echo_server = echo_through(connect_local(&sock), &id, ECHOES);
    let echo_bare = echo_bare_pty(ECHOES);
    let _ = std::fs::remove_dir_all(&root);
    let summary = |v: Vec<f64>| {
        let (min, max) = (v.iter().cloned().fold(f64::MAX, f64::min), v.iter().cloned().fold(0.0, f64::max));
        format!("{{\"n\": {}, \"min\": {min:.1}, \"median\": {:.1}, \"p99\": {:.1}, \"max\": {max:.1}}}", v.len(), median(v.clone()), p99(v))
    };
    println!("{{");
    println!("  \"config\": {{\"boots\": {boots}, \"mem_mib\": {mem_mib}, \"overlay\": \"{}\"}},", if tmpfs { "tmpfs" } else { "disk" });
    println!("  \"launch_to_agent_ready_ms\": {},", summary(launch));
    println!("  \"exec_true_round_trip_ms\": {},", summary(exec));
    println!("  \"local_fork_exec_true_ms\": {},", summary(local));
    println!("  \"firecracker_rss_idle_mib\": {},", summary(rss));
    println!("  \"clean_stop_ms\": {},", summary(stop));
    println!("  \"snapshot_restore_to_agent_answer_ms\": {},", summary(restore));
    println!("  \"pty_echo_guest_agent_vsock_ms\": {},", summary(echo_guest));
    println!("  \"pty_echo_same_server_unix_socket_ms\": {},", summary(echo_server));
    println!("  \"pty_echo_bare_local_pty_ms\": {}", summary(echo_bare));
    println!("}}");
}

/// The floor: the same `cat` on a PTY opened right here, no protocol in between.
fn echo_bare_pty(n: usize) -> Vec<f64> {
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave = || std::process::Stdio::from(pty.slave.try_clone().unwrap());
    let mut child = Command::new("sh").args(["-c", "stty raw -echo; echo ready; exec cat"]).stdin(slave()).stdout(slave()).stderr(slave()).spawn().unwrap();
    let mut master = std::fs::File::from(pty.master);
    let mut buf = [0u8; 256];
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("ready") {
        let k = master.read(&mut buf).unwrap();
        seen.extend_from_slice(&buf[..k]);
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let key = b'a' + (i % 26) as u8;
        let start = Instant::now();
        master.write_all(&[key]).unwrap();
        loop {
            let k = master.read(&mut buf).unwrap();
            if buf[..k].contains(&key) {
                break;
            }
        }
        out.push(ms(start.elapsed()));
    }
    let _ = child.kill();
    let _ = child.wait();
    out
}
