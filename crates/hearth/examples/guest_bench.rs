//! What the guest kernel's timer and idle settings cost and give, for bench/guest.sh (run it in
//! the box: `hearth box run --host-bin -- target/release/examples/guest_bench [echoes] [idle s]
//! [vcpus]`). Prints JSON.
//!
//! One workstation image and kernel, booted once per variant of the kernel command line, all
//! in the same box run so the variants are comparable:
//! - `as_built`: the guest kernel as configured (tickless idle, high-resolution timers);
//! - `periodic_tick`: `nohz=off highres=off`, a tick on every vCPU 250 times a second and
//!   timers at its 4 ms granularity: the guest kernel before they were configured, the peer;
//! - `low_res_timers`: `highres=off`, tickless idle but timers at the tick's granularity.
//!
//! Per variant and round (two rounds, the variants taking turns): Firecracker's CPU time while
//! the guest sits idle (what a fleet of idle workstations costs the host), the mean wall time
//! of a 1 ms sleep in the guest (timer granularity as a user sees it), exec round trips and
//! keystroke echo through the agent, then 20 MB output floods through the agent (plain and
//! through a PTY) with a deadline: the guest hangs seen in the box under floods are counted per
//! variant.

use std::time::{Duration, Instant};

use hearth_proto::control::ExecSpec;
use hearth_vmm::vm::{console_tail, Vm, VmConfig};

#[path = "common/cpu.rs"]
mod cpu;
#[path = "common/echo.rs"]
mod echo;
#[path = "common/guest.rs"]
mod guest;
#[path = "common/stats.rs"]
mod stats;
use cpu::cpu_percent;
use echo::{echo_through, raw_cat};
use guest::{bench_vm_config, fresh_dir, guest_out};
use stats::{median, ms, p99};

const VARIANTS: &[(&str, &[&str])] = &[("as_built", &[]), ("low_res_timers", &["highres=off"]), ("periodic_tick", &["nohz=off", "highres=off"])];

/// Output floods through the agent: plain `seq` and `seq` through a PTY (`script`).
const FLOODS: &[(&str, &str)] = &[("plain", "seq 1 2500000"), ("pty", "script -qfec 'seq 1 2500000' /dev/null")];

/// A flood that has not ended by then counts as failed: a hung guest (the VM is killed).
const FLOOD_DEADLINE: Duration = Duration::from_secs(180);

/// Python in the guest: the mean wall time of `time.sleep(0.001)`, in ms.
const SLEEP_PROBE: &str = "import time\nn = 200\nt = time.perf_counter()\nfor _ in range(n):\n    time.sleep(0.001)\nprint((time.perf_counter() - t) / n * 1000)";

/// One variant's measures over the rounds (the guest's settings as it reported them last).
#[derive(Default)]
struct Seen {
    clock: String,
    idle_driver: String,
    hres: String,
    launch: Vec<f64>,
    idle_pct: Vec<f64>,
    sleep_ms: Vec<f64>,
    exec: Vec<f64>,
    echo: Vec<f64>,
    flood_mb_s: std::collections::BTreeMap<&'static str, Vec<f64>>,
    floods_failed: usize,
}

/// Runs `script` in the guest, its output counted: MB/s, or what went wrong: an error, or no
/// end by the deadline (the VM is then killed, which ends the call).
fn flood(vm: &Vm, script: &'static str) -> Result<f64, String> {
    let agent = vm.agent(Duration::from_secs(30)).map_err(|e| format!("connecting: {e}"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let t = Instant::now();
        let done = match agent.exec_collect(ExecSpec::new(["sh", "-c", script])) {
            Ok((exit, out, _)) if exit.status() == 0 => Ok(out.len() as f64 / t.elapsed().as_secs_f64() / 1e6),
            Ok((exit, out, err)) => Err(format!("{exit:?} after {} bytes: {}", out.len(), String::from_utf8_lossy(&err))),
            Err(e) => Err(format!("{e}")),
        };
        let _ = tx.send(done);
    });
    rx.recv_timeout(FLOOD_DEADLINE).unwrap_or_else(|_| {
        let fc = vm.firecracker_log_tail();
        vm.kill();
        Err(format!("no end after {FLOOD_DEADLINE:?}; Firecracker's log tail:\n{fc}"))
    })
}

fn main() {
    let arg = |i: usize| std::env::args().nth(i);
    let echoes: usize = arg(1).and_then(|a| a.parse().ok()).unwrap_or(300);
    let idle_secs: u64 = arg(2).and_then(|a| a.parse().ok()).unwrap_or(20);
    let vcpus: u8 = arg(3).and_then(|a| a.parse().ok()).unwrap_or(2);
    let root = fresh_dir("guest-bench");
    let base = bench_vm_config(vcpus);
    let summary = |v: Vec<f64>| serde_json::json!({"n": v.len(), "median": median(v.clone()), "p99": p99(v)});
    // Each variant boots once per round, the variants taking turns, so a slow spell of the
    // emulated machine falls on all of them rather than on whichever ran then.
    const ROUNDS: usize = 2;
    let mut seen: Vec<Seen> = VARIANTS.iter().map(|_| Seen::default()).collect();
    for round in 0..ROUNDS {
        for ((name, args), seen) in VARIANTS.iter().zip(&mut seen) {
            let cfg = VmConfig { extra_boot_args: args.iter().map(|a| a.to_string()).collect(), ..base.clone() };
            let t = Instant::now();
            let vm = Vm::launch(&root.join(format!("{name}-{round}")), &cfg, Duration::from_secs(120)).expect("launch");
            seen.launch.push(ms(t.elapsed()));
            // What the variant really runs with, read back from the guest.
            let read = |path: &str| guest_out(&vm, &["sh", "-c", &format!("cat {path} 2>/dev/null || echo none")]);
            seen.clock = read("/sys/devices/system/clockevents/clockevent0/current_device");
            seen.idle_driver = read("/sys/devices/system/cpu/cpuidle/current_driver");
            seen.hres = guest_out(&vm, &["sh", "-c", "grep -c 'hres_active *: *1' /proc/timer_list || true"]);
            // Let boot's stragglers finish, then leave the guest alone.
            std::thread::sleep(Duration::from_secs(5));
            seen.idle_pct.push(cpu_percent(vm.pid(), || std::thread::sleep(Duration::from_secs(idle_secs))));
            seen.sleep_ms.push(guest_out(&vm, &["python3", "-c", SLEEP_PROBE]).parse().expect("the probe prints a number"));
            for _ in 0..20 {
                let t = Instant::now();
                guest_out(&vm, &["true"]);
                seen.exec.push(ms(t.elapsed()));
            }
            let id = vm.agent(Duration::from_secs(10)).unwrap().pty_open(raw_cat()).unwrap().id;
            seen.echo.extend(echo_through(vm.agent(Duration::from_secs(10)).unwrap(), &id, echoes / ROUNDS));
            for (kind, script) in FLOODS {
                match flood(&vm, script) {
                    Ok(rate) => seen.flood_mb_s.entry(kind).or_default().push(rate),
                    Err(why) => {
                        seen.floods_failed += 1;
                        eprintln!("guest_bench: {name} round {round}: the {kind} flood failed: {why}; console tail:\n{}", console_tail(vm.dir()));
                        break;
                    }
                }
            }
            vm.kill();
        }
    }
    let mut results = serde_json::Map::new();
    for ((name, args), seen) in VARIANTS.iter().zip(seen) {
        results.insert(
            name.to_string(),
            serde_json::json!({
                "boot_args": args.join(" "),
                "clockevent": seen.clock,
                "cpuidle_driver": seen.idle_driver,
                "cpus_with_hres_timers": seen.hres,
                "launch_to_agent_ready_ms": seen.launch,
                "idle_firecracker_cpu_percent": seen.idle_pct,
                "sleep_1ms_takes_ms": seen.sleep_ms,
                "exec_true_round_trip_ms": summary(seen.exec),
                "pty_echo_guest_agent_vsock_ms": summary(seen.echo),
                "flood_mb_per_s": seen.flood_mb_s,
                "floods_failed_or_hung": seen.floods_failed,
            }),
        );
    }
    let _ = std::fs::remove_dir_all(&root);
    let out = serde_json::json!({"config": {"vcpus": vcpus, "mem_mib": 512, "echoes": echoes, "idle_secs": idle_secs}, "variants": results});
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}
