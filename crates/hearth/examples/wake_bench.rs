//! What waking a task on another vCPU costs a 2-vCPU guest, and what guest halt polling does
//! about it, for bench/wake.sh (run it in the box: `hearth box run --host-bin --
//! target/release/examples/wake_bench [round trips]`). Prints JSON.
//!
//! A keystroke's echo in a workstation hands the byte from task to task (agent, PTY, shell,
//! PTY, agent); a hand-off to a task on a halted vCPU costs an interrupt and that vCPU's
//! return from halt, which under the box's emulated nested virtualization is far dearer than
//! on hardware. Per kernel command-line variant (as built; the halt-polling idle driver with
//! Linux's 200 us window and with a 2 ms one), booted in turns over two rounds: one byte's
//! round trip between two guest processes (a pipe; `cat` on a raw PTY) on one vCPU, on one
//! each, and where the scheduler puts them; the vsock floor (an agent health request); the
//! agent's terminal echo over vsock, with the guest's interrupts per echo by source (each one
//! an exit, or a halted vCPU woken); and what the guest costs its Firecracker in CPU idle and
//! under a light periodic load (a process waking every 10 ms, every 1 ms), the price of
//! polling.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

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

/// Python in the guest: round trips of one byte between two processes, by placement; prints
/// JSON {kind: {placement: [p50 ms, p99 ms]}}.
const PROBE: &str = r#"
import json, os, pty, sys, time, tty
N = int(sys.argv[1])
# Every vCPU (not this process's affinity: a placement variant may have pinned its parent).
ALL = set(range(os.cpu_count()))

def pin(cpu):
    os.sched_setaffinity(0, ALL if cpu is None else {cpu})

def pipe_peer(cpu):
    # A child that sends each byte back: (pid, read end, write end) for the parent.
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    pid = os.fork()
    if pid == 0:
        pin(cpu)
        while True:
            x = os.read(r1, 1)
            if not x:
                os._exit(0)
            os.write(w2, x)
    os.close(r1); os.close(w2)
    return pid, r2, w1

def pty_peer(cpu):
    # `cat` on a raw PTY: the master is both ends.
    m, s = pty.openpty()
    tty.setraw(s)
    pid = os.fork()
    if pid == 0:
        os.close(m)
        pin(cpu)
        os.dup2(s, 0); os.dup2(s, 1)
        os.execvp("cat", ["cat"])
    os.close(s)
    return pid, m, m

out = {}
for kind, peer in (("pipe", pipe_peer), ("pty_cat", pty_peer)):
    out[kind] = {}
    for name, a, b in (("same_vcpu", 0, 0), ("other_vcpu", 0, 1), ("unpinned", None, None)):
        pid, r, w = peer(b)
        pin(a)
        ts = []
        for _ in range(N):
            t = time.perf_counter()
            os.write(w, b"x")
            while not os.read(r, 1):
                pass
            ts.append(time.perf_counter() - t)
        pin(None)
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        for fd in {r, w}:
            os.close(fd)
        ts.sort()
        out[kind][name] = [round(ts[len(ts) // 2] * 1000, 3), round(ts[min(len(ts) - 1, int(len(ts) * 0.99))] * 1000, 3)]
print(json.dumps(out))
"#;

/// A guest variant: its halt-polling window (zero: none) and what is placed on vCPU 0 once it
/// has booted (see [`PLACE`]).
struct Variant {
    name: &'static str,
    halt_poll: Duration,
    on_vcpu0: &'static str,
}

/// Guest halt-polling windows, booted in turns (none: the guest as built). A wake-up on a
/// vCPU while it polls needs no interrupt (the poller sees the flag) and nothing exits to the
/// host. Linux's default window (200 us), then one ten times longer.
const POLLING: &[Variant] = &[
    Variant { name: "as_built", halt_poll: Duration::ZERO, on_vcpu0: "" },
    Variant { name: "halt_poll_200us", halt_poll: Duration::from_micros(200), on_vcpu0: "" },
    Variant { name: "halt_poll_2ms", halt_poll: Duration::from_millis(2), on_vcpu0: "" },
];

/// The terminal path's tasks kept on one vCPU, so that fewer of its hand-offs cross to the
/// other: the unbound workqueue that moves PTY bytes between master and slave
/// (`flush_to_ldisc`), the agent's threads with vsock's interrupt, both, and (the bound) those
/// and the terminal's program too.
const PLACEMENT: &[Variant] = &[
    Variant { name: "as_built", halt_poll: Duration::ZERO, on_vcpu0: "" },
    Variant { name: "pty_workqueue", halt_poll: Duration::ZERO, on_vcpu0: "wq" },
    Variant { name: "agent_and_vsock_irq", halt_poll: Duration::ZERO, on_vcpu0: "agent" },
    Variant { name: "workqueue_agent_irq", halt_poll: Duration::ZERO, on_vcpu0: "wq,agent" },
    Variant { name: "all_with_the_program", halt_poll: Duration::ZERO, on_vcpu0: "wq,agent,cat" },
];

/// Python run as root in the guest: puts what `sys.argv[1]` names (comma-separated: `wq`,
/// `agent`, `cat`) on vCPU 0 and prints what it did.
const PLACE: &str = r#"
import glob, os, sys
what = sys.argv[1].split(",")
def comm(pid):
    try:
        return open(f"/proc/{pid}/comm").read().strip()
    except OSError:
        return ""
def pin(name):
    n = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if comm(pid) == name:
            for tid in os.listdir(f"/proc/{pid}/task"):
                os.sched_setaffinity(int(tid), {0})
                n += 1
    assert n, name
    print(f"{name}: {n} threads on vCPU 0")
if "wq" in what:
    open("/sys/devices/virtual/workqueue/cpumask", "w").write("1")
    print("unbound workqueues on vCPU 0")
if "agent" in what:
    pin("hearth-agent")
    dev = [d for d in glob.glob("/sys/bus/virtio/devices/*") if os.path.basename(os.readlink(d + "/driver")).startswith("vmw_vsock")]
    assert dev, "no vsock device"
    name = os.path.basename(dev[0])
    irqs = [l.split(":")[0].strip() for l in open("/proc/interrupts") if l.split() and l.split()[-1] == name]
    assert irqs, f"no interrupt for {name}"
    for irq in irqs:
        open(f"/proc/irq/{irq}/smp_affinity", "w").write("1")
        print(f"irq {irq} ({name}) on vCPU 0")
if "cat" in what:
    pin("cat")
"#;

/// A light periodic load: a process that wakes every `sys.argv[1]` ms (a progress bar, an
/// event loop's timer) for 10 s. What polling costs when wake-ups come often: every 10 ms,
/// and every 1 ms (inside the 2 ms window, the worst case for it).
const TICKER: &str = "import sys, time\nn = int(sys.argv[1])\nfor _ in range(10000 // n):\n    time.sleep(n / 1000)";

/// One guest's measures (p50 and p99 in ms), after placing `on_vcpu0` (the idle and ticker
/// costs only without placement: they are polling's price).
fn measure(vm: &Vm, n: usize, on_vcpu0: &str) -> serde_json::Value {
    let topology = guest_out(
        vm,
        &["sh", "-c", "for c in /sys/devices/system/cpu/cpu0/cache/index*; do echo \"L$(cat $c/level) $(cat $c/type): cpus $(cat $c/shared_cpu_list)\"; done; grep -m1 'model name' /proc/cpuinfo; cat /sys/devices/system/cpu/cpuidle/current_governor_ro /sys/module/haltpoll/parameters/guest_halt_poll_ns 2>/dev/null; grep domain /proc/schedstat || true"],
    );
    let summary = |v: Vec<f64>| serde_json::json!([median(v.clone()), p99(v)]);
    // The terminal starts before the placement, so that its program keeps every vCPU unless
    // the variant pins it too.
    let session = vm.agent(Duration::from_secs(10)).unwrap().pty_open(raw_cat()).unwrap();
    let placed = if on_vcpu0.is_empty() {
        String::new()
    } else {
        std::thread::sleep(Duration::from_secs(1));
        guest_out(vm, &["python3", "-c", PLACE, on_vcpu0])
    };
    let floor: Vec<f64> = {
        let mut agent = vm.agent(Duration::from_secs(10)).unwrap();
        (0..n)
            .map(|_| {
                let t = Instant::now();
                agent.health().unwrap();
                ms(t.elapsed())
            })
            .collect()
    };
    eprintln!("wake_bench: floor measured");
    let in_guest: serde_json::Value = serde_json::from_str(&guest_out(vm, &["python3", "-c", PROBE, &n.to_string()])).expect("the probe prints JSON");
    eprintln!("wake_bench: in-guest probe done");
    let before = interrupts(vm);
    let echo = echo_through(vm.agent(Duration::from_secs(10)).unwrap(), &session.id, n);
    let after = interrupts(vm);
    eprintln!("wake_bench: agent echo done");
    let mut seen = serde_json::json!({
        "guest_topology": topology.lines().collect::<Vec<_>>(),
        "placed": placed.lines().collect::<Vec<_>>(),
        "vsock_floor_agent_health": summary(floor),
        "in_guest": in_guest,
        "agent_pty_echo": summary(echo),
        "agent_pty_echo_interrupts_per_round_trip": per_round_trip(&before, &after, n),
    });
    if on_vcpu0.is_empty() {
        let idle = cpu_percent(vm.pid(), || std::thread::sleep(Duration::from_secs(10)));
        let ticking = |every_ms: &str| {
            cpu_percent(vm.pid(), || {
                guest_out(vm, &["python3", "-c", TICKER, every_ms]);
            })
        };
        let (ticker_10ms, ticker_1ms) = (ticking("10"), ticking("1"));
        seen["firecracker_cpu_percent_idle"] = idle.into();
        seen["firecracker_cpu_percent_10ms_ticker"] = ticker_10ms.into();
        seen["firecracker_cpu_percent_1ms_ticker"] = ticker_1ms.into();
    }
    seen
}

/// The guest's interrupt counts by source, summed over its vCPUs (`/proc/interrupts`: a
/// device's line by its device's name, the others by their short name: LOC the local timer,
/// RES rescheduling, CAL function calls, which include the wake-ups of tasks on another vCPU).
fn interrupts(vm: &Vm) -> BTreeMap<String, u64> {
    let table = guest_out(vm, &["cat", "/proc/interrupts"]);
    let cpus = table.lines().next().map_or(0, |l| l.split_whitespace().count());
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let (source, rest) = line.split_once(':')?;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let count: u64 = fields.iter().take(cpus).map_while(|f| f.parse::<u64>().ok()).sum();
            let source = source.trim();
            let name = if source.bytes().all(|b| b.is_ascii_digit()) { fields.last().copied().unwrap_or(source) } else { source };
            Some((name.to_string(), count))
        })
        .collect()
}

/// Interrupts per round trip from counts taken around `n` of them, the sources that fired at
/// least once every ten round trips.
fn per_round_trip(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, n: usize) -> serde_json::Value {
    let rates: serde_json::Map<String, serde_json::Value> = after
        .iter()
        .filter_map(|(name, count)| {
            let d = count.saturating_sub(before.get(name).copied().unwrap_or(0));
            (d * 10 >= n as u64).then(|| (name.clone(), serde_json::json!((d as f64 / n as f64 * 100.0).round() / 100.0)))
        })
        .collect();
    rates.into()
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(500);
    let set = std::env::args().nth(2).unwrap_or_else(|| "polling".into());
    let variants_run = match set.as_str() {
        "polling" => POLLING,
        "placement" => PLACEMENT,
        other => panic!("variant set {other:?}: polling or placement"),
    };
    let root = fresh_dir("wake-bench");
    let base = bench_vm_config(2);
    // Each variant boots once per round, the variants taking turns, so a slow spell of the
    // emulated machine falls on all of them rather than on whichever ran then.
    const ROUNDS: usize = 2;
    let mut variants: serde_json::Map<String, serde_json::Value> = variants_run.iter().map(|v| (v.name.to_string(), serde_json::json!([]))).collect();
    for round in 0..ROUNDS {
        for Variant { name, halt_poll, on_vcpu0 } in variants_run {
            let cfg = VmConfig { extra_boot_args: hearth_vmm::halt_poll_boot_args(*halt_poll), ..base.clone() };
            let vm = Vm::launch(&root.join(format!("{name}-{round}")), &cfg, Duration::from_secs(120)).expect("launch");
            // Let boot's stragglers finish.
            std::thread::sleep(Duration::from_secs(5));
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| measure(&vm, n, on_vcpu0))) {
                Ok(seen) => {
                    // As it comes too: a box lost later keeps what was measured before.
                    eprintln!("wake_bench: {name} round {round}: {seen}");
                    variants[*name].as_array_mut().unwrap().push(seen)
                }
                Err(panic) => {
                    eprintln!("wake_bench: {name} failed; the guest's console ends:\n{}\nFirecracker's log ends:\n{}", console_tail(vm.dir()), vm.firecracker_log_tail());
                    std::panic::resume_unwind(panic)
                }
            };
            vm.kill();
        }
    }
    let _ = std::fs::remove_dir_all(&root);
    let out = serde_json::json!({"config": {"variant_set": set, "vcpus": 2, "mem_mib": 512, "round_trips": n}, "variants": variants});
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}
