//! What the guest kernel's timer and idle settings cost and give, for bench/guest.sh (run it in
//! the box: `hearth box run --host-bin -- target/release/examples/guest_bench [echoes] [idle s]
//! [vcpus]`). Prints JSON.
//!
//! One workstation image and kernel, booted once per variant of the kernel command line, all
//! in the same box run so the variants are comparable:
//! - `as_built`: the guest kernel as configured (tickless idle, high-resolution timers);
//! - `periodic_tick`: `nohz=off highres=off`, a tick on every vCPU 250 times a second and
//!   timers at its 4 ms granularity: the guest kernel before they were configured, the peer;
//! - `guest_halt_poll`: `cpuidle_haltpoll.force=1`, an idle vCPU polls a while before it halts
//!   (a wake-up then needs no interrupt; the polling burns host CPU).
//!
//! Per variant: Firecracker's CPU time while the guest sits idle (what a fleet of idle
//! workstations costs the host), the mean wall time of a 1 ms sleep in the guest (timer
//! granularity as a user sees it), exec round trips and keystroke echo through the agent.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hearth_image::{refs, Cache};
use hearth_proto::control::ExecSpec;
use hearth_vmm::vm::{Overlay, Vm, VmConfig};

#[path = "common/stats.rs"]
mod stats;
#[path = "common/echo.rs"]
mod echo;
use echo::{echo_through, raw_cat};
use stats::{median, ms, p99};

const VARIANTS: &[(&str, &[&str])] = &[
    ("as_built", &[]),
    ("periodic_tick", &["nohz=off", "highres=off"]),
    ("guest_halt_poll", &["cpuidle_haltpoll.force=1"]),
];

/// Python in the guest: the mean wall time of `time.sleep(0.001)`, in ms.
const SLEEP_PROBE: &str = "import time\nn = 200\nt = time.perf_counter()\nfor _ in range(n):\n    time.sleep(0.001)\nprint((time.perf_counter() - t) / n * 1000)";

/// CPU time (user + system, all threads) the process has used, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("firecracker's /proc stat");
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<f64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0.0)).collect();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as f64;
    (f[11] + f[12]) / hz
}

fn guest_out(vm: &Vm, argv: &[&str]) -> String {
    let (exit, out, err) = vm.agent(Duration::from_secs(30)).unwrap().exec_collect(ExecSpec::new(argv.iter().copied())).unwrap();
    assert_eq!(exit.status(), 0, "{argv:?}: {}", String::from_utf8_lossy(&err));
    String::from_utf8_lossy(&out).trim().to_string()
}

fn main() {
    let arg = |i: usize| std::env::args().nth(i);
    let echoes: usize = arg(1).and_then(|a| a.parse().ok()).unwrap_or(300);
    let idle_secs: u64 = arg(2).and_then(|a| a.parse().ok()).unwrap_or(20);
    let vcpus: u8 = arg(3).and_then(|a| a.parse().ok()).unwrap_or(2);
    let cache = Cache::new(std::env::var("HEARTH_CACHE_DIR").expect("HEARTH_CACHE_DIR (run in the box)"));
    let file = |name: &str, f: &str| cache.resolve_file(name, f).expect("artifacts built");
    let root = PathBuf::from(std::env::var("HEARTH_DATA_DIR").expect("HEARTH_DATA_DIR")).join("guest-bench");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let base = VmConfig {
        firecracker: file(refs::FIRECRACKER, "firecracker"),
        kernel: file(refs::GUEST_KERNEL, "vmlinux"),
        base_image: file(&refs::rootfs(refs::DEFAULT_RECIPE), "rootfs.ext4"),
        overlay: Overlay::Tmpfs,
        vcpus,
        mem_mib: 512,
        smt: false,
        hostname: "bench".into(),
        extra_boot_args: vec![],
        network: None,
        jail: None,
    };
    let summary = |v: Vec<f64>| serde_json::json!({"n": v.len(), "median": median(v.clone()), "p99": p99(v)});
    let mut results = serde_json::Map::new();
    for (name, args) in VARIANTS {
        let cfg = VmConfig { extra_boot_args: args.iter().map(|a| a.to_string()).collect(), ..base.clone() };
        let t = Instant::now();
        let vm = Vm::launch(&root.join(name), &cfg, Duration::from_secs(120)).expect("launch");
        let launch = ms(t.elapsed());
        // What the variant really runs with, read back from the guest.
        let read = |path: &str| guest_out(&vm, &["sh", "-c", &format!("cat {path} 2>/dev/null || echo none")]);
        let clock = read("/sys/devices/system/clockevents/clockevent0/current_device");
        let idle_driver = read("/sys/devices/system/cpu/cpuidle/current_driver");
        let hres = guest_out(&vm, &["sh", "-c", "grep -c 'hres_active *: *1' /proc/timer_list || true"]);
        // Let boot's stragglers finish, then leave the guest alone.
        std::thread::sleep(Duration::from_secs(5));
        let (c0, t0) = (cpu_secs(vm.pid()), Instant::now());
        std::thread::sleep(Duration::from_secs(idle_secs));
        let idle_pct = (cpu_secs(vm.pid()) - c0) / t0.elapsed().as_secs_f64() * 100.0;
        let sleep_ms: f64 = guest_out(&vm, &["python3", "-c", SLEEP_PROBE]).parse().expect("the probe prints a number");
        let mut exec = vec![];
        for _ in 0..20 {
            let t = Instant::now();
            guest_out(&vm, &["true"]);
            exec.push(ms(t.elapsed()));
        }
        let id = vm.agent(Duration::from_secs(10)).unwrap().pty_open(raw_cat()).unwrap().id;
        let echo = echo_through(vm.agent(Duration::from_secs(10)).unwrap(), &id, echoes);
        vm.kill();
        results.insert(
            name.to_string(),
            serde_json::json!({
                "boot_args": args.join(" "),
                "clockevent": clock,
                "cpuidle_driver": idle_driver,
                "cpus_with_hres_timers": hres,
                "launch_to_agent_ready_ms": launch,
                "idle_firecracker_cpu_percent": idle_pct,
                "sleep_1ms_takes_ms": sleep_ms,
                "exec_true_round_trip_ms": summary(exec),
                "pty_echo_guest_agent_vsock_ms": summary(echo),
            }),
        );
    }
    let _ = std::fs::remove_dir_all(&root);
    let out = serde_json::json!({"config": {"vcpus": vcpus, "mem_mib": 512, "echoes": echoes, "idle_secs": idle_secs}, "variants": results});
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}
