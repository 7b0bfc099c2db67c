//! VMs through the hearth-vmm library, with the real Firecracker, in the box: what the
//! workstation lifecycle (workstation_e2e.rs) does not cover: pause, snapshot, restore,
//! the clock after a restore, the balloon, the guest network.
//!
//! On a host whose KVM cannot run guests the test re-runs itself inside the box
//! (`hearth box run --host-bin -- <this test binary> --exact <test>`): the same assertions
//! then run next to the box's /dev/kvm. Nothing is skipped anywhere.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use hearth_image::{refs, Cache};
use hearth_proto::control::ExecSpec;
use hearth_vmm::vm::{console_tail, create_ext4_disk, Overlay, StopKind, Vm, VmConfig};

fn config(cache: &Cache, overlay: Overlay, hostname: &str) -> VmConfig {
    let file = |name: &str, f: &str| cache.resolve_file(name, f).unwrap();
    VmConfig {
        firecracker: file(refs::FIRECRACKER, "firecracker"),
        kernel: file(refs::GUEST_KERNEL, "vmlinux"),
        base_image: file(&refs::rootfs(refs::DEFAULT_RECIPE), "rootfs.ext4"),
        overlay,
        vcpus: 2,
        mem_mib: 512,
        smt: false,
        hostname: hostname.into(),
        extra_boot_args: vec![],
        network: None,
        jail: None,
    }
}

/// Runs a shell command in the guest; returns (status, stdout).
fn sh(vm: &Vm, user: Option<&str>, script: &str) -> (i32, String) {
    let spec = ExecSpec { user: user.map(str::to_string), timeout_secs: Some(300), ..ExecSpec::new(["sh", "-c", script]) };
    let (exit, out, err) = vm
        .agent(Duration::from_secs(10))
        .and_then(|a| Ok(a.exec_collect(spec)?))
        .unwrap_or_else(|e| panic!("{script}: {e}; console tail:\n{}", vm.firecracker_log_tail() + &console_tail(vm.dir())));
    let out = String::from_utf8_lossy(&out).into_owned();
    assert!(err.is_empty() || exit.status() != 0, "stderr: {}", String::from_utf8_lossy(&err));
    (exit.status(), out)
}

/// How many of the guest's CPUs run tickless with high-resolution timers.
const TICKLESS_CPUS: &str = "grep -c 'nohz_mode *: 2' /proc/timer_list";

#[test]
fn a_vm_pauses_snapshots_and_restores_with_its_memory_and_clock() {
    if common::delegated_to_box("a_vm_pauses_snapshots_and_restores_with_its_memory_and_clock") {
        return;
    }
    let cache = Cache::new(common::cache_dir());
    let root: PathBuf = PathBuf::from(std::env::var("HEARTH_DATA_DIR").unwrap()).join(format!("vm-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let overlay = root.join("overlay.ext4");
    create_ext4_disk(&overlay, 512 << 20, Path::new("mkfs.ext4")).unwrap();
    let rw = config(&cache, Overlay::Disk(overlay.clone()), "ws-rw");

    // Boot, exec as the image's user, hostname from the host, a file in the home.
    let vm = Vm::launch(&root.join("rw"), &rw, Duration::from_secs(120)).unwrap();
    assert_eq!(sh(&vm, Some("scientist"), "echo kept > ~/notes; hostname; id -un; cat ~/notes"), (0, "ws-rw\nscientist\nkept\n".into()));
    // Both vCPUs idle without a periodic tick, with high-resolution timers (nohz mode 2):
    // an idle workstation costs the host little, and a 1 ms sleep is not a 4 ms one.
    assert_eq!(sh(&vm, None, TICKLESS_CPUS), (0, "2\n".into()));
    // Re-attach as a later process would, by directory.
    let again = Vm::attach(vm.dir()).expect("re-attach to the running VM");
    assert_eq!(again.pid(), vm.pid());
    // The balloon device answers with the guest's memory statistics.
    vm.set_balloon(64).unwrap();
    assert!(vm.balloon_stats().is_ok());
    vm.set_balloon(0).unwrap();

    // Pause and resume; then a full snapshot, the VM killed, and a restore into a fresh
    // Firecracker: memory came back (a file on the guest's tmpfs /tmp is still there).
    vm.pause().unwrap();
    vm.resume().unwrap();
    assert_eq!(sh(&vm, None, "echo in-memory > /tmp/marker; cat /tmp/marker").1, "in-memory\n");
    let (state, mem) = (root.join("rw.state"), root.join("rw.mem"));
    vm.snapshot(&state, &mem).unwrap();
    vm.kill();
    // Long enough that a guest waking with its snapshot's clock would be visibly behind.
    std::thread::sleep(Duration::from_secs(8));
    let vm = Vm::restore(&root.join("rw"), &rw, &state, &mem, Duration::from_secs(60)).unwrap();
    assert_eq!(sh(&vm, Some("scientist"), "cat /tmp/marker ~/notes").1, "in-memory\nkept\n");
    assert_eq!(sh(&vm, None, TICKLESS_CPUS), (0, "2\n".into()), "timers after a restore");
    // The guest's wall clock follows the host's, after boot and after a restore.
    let guest_now: u64 = sh(&vm, None, "date +%s").1.trim().parse().unwrap();
    let host_now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(guest_now.abs_diff(host_now) <= 5, "guest clock {guest_now}, host {host_now}");
    assert_eq!(vm.stop(Duration::from_secs(30)), StopKind::Clean);
    assert!(Vm::attach(vm.dir()).is_none());
    std::fs::remove_dir_all(&root).unwrap();
}

/// Runs `ip` in the box (test set-up only; hearth's own network code is netlink, issue 6).
fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip").args(args).output().unwrap();
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_guest_takes_its_network_from_the_host() {
    if common::delegated_to_box("a_guest_takes_its_network_from_the_host") {
        return;
    }
    use hearth_vmm::models::{RateLimiter, TokenBucket};
    use hearth_vmm::vm::NetConfig;
    // A namespace of the test's own, holding the tap: no traffic leaves it.
    let ns = format!("hearth-t{}", std::process::id());
    ip(&["netns", "add", &ns]);
    ip(&["-n", &ns, "link", "set", "lo", "up"]);
    ip(&["-n", &ns, "tuntap", "add", "dev", "tap0", "mode", "tap"]);
    ip(&["-n", &ns, "addr", "add", "10.213.0.1/30", "dev", "tap0"]);
    ip(&["-n", &ns, "link", "set", "tap0", "up"]);
    let cache = Cache::new(common::cache_dir());
    let root: PathBuf = PathBuf::from(std::env::var("HEARTH_DATA_DIR").unwrap()).join(format!("vm-net-{}", std::process::id()));
    let mut cfg = config(&cache, Overlay::Tmpfs, "ws-net");
    cfg.network = Some(NetConfig {
        netns: Some(PathBuf::from(format!("/run/netns/{ns}"))),
        tap: "tap0".into(),
        guest_mac: Some("06:00:0a:d5:00:02".into()),
        address: [10, 213, 0, 2].into(),
        prefix: 30,
        gateway: [10, 213, 0, 1].into(),
        mtu: 1400,
        dns: vec![[10, 213, 0, 1].into()],
        rx: Some(RateLimiter { bandwidth: Some(TokenBucket::per_second(10 << 20)), ops: None }),
        tx: None,
    });
    let vm = Vm::launch(&root, &cfg, Duration::from_secs(120)).unwrap();
    let (status, out) = sh(
        &vm,
        None,
        "ip -4 -o addr show eth0 | awk '{print $4}'; cat /sys/class/net/eth0/mtu /sys/class/net/eth0/address; \
         ip route show default | cut -d' ' -f1-3; grep nameserver /etc/resolv.conf; \
         ip -o link show lo | grep -c LOWER_UP; ping -c1 -W5 10.213.0.1 >/dev/null && echo gateway-answers",
    );
    assert_eq!((status, out.as_str()), (0, "10.213.0.2/30\n1400\n06:00:0a:d5:00:02\ndefault via 10.213.0.1\nnameserver 10.213.0.1\n1\ngateway-answers\n"));
    // The reply came back through the tap: the namespace reaches the guest too.
    vm.kill();
    ip(&["netns", "del", &ns]);
    std::fs::remove_dir_all(&root).unwrap();
}
