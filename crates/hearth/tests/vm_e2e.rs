//! VMs through the hearth-vmm library, with the real Firecracker, in the box: what the
//! workstation lifecycle (workstation_e2e.rs) does not cover: pause, snapshot, restore,
//! the clock after a restore, the balloon.
//!
//! On a host whose KVM cannot run guests the test re-runs itself inside the box
//! (`hearth box run --host-bin -- <this test binary> --exact <test>`): the same assertions
//! then run next to the box's /dev/kvm. Nothing is skipped anywhere.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use hearth_image::{refs, Cache};
use hearth_proto::control::ExecSpec;
use hearth_vmm::vm::{create_ext4_disk, Overlay, StopKind, Vm, VmConfig};

/// On the host: runs `test` of this binary inside a box started for it; returns true then.
fn delegated_to_box(test: &str) -> bool {
    if std::env::var_os("HEARTH_IN_BOX").is_some() {
        return false;
    }
    let data = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = common::run_ok(common::hearth(data.path()).args(["box", "run", "--mem-mib", "4096", "--host-bin", "--"]).arg(exe).args([
        "--exact",
        test,
        "--nocapture",
        "--test-threads=1",
    ]));
    assert!(out.contains("1 passed"), "the test did not run in the box:\n{out}");
    true
}

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
    }
}

/// Runs a shell command in the guest; returns (status, stdout).
fn sh(vm: &Vm, user: Option<&str>, script: &str) -> (i32, String) {
    let spec = ExecSpec { user: user.map(str::to_string), timeout_secs: Some(60), ..ExecSpec::new(["sh", "-c", script]) };
    let (exit, out, err) = vm.agent(Duration::from_secs(10)).unwrap().exec_collect(spec).unwrap();
    let out = String::from_utf8_lossy(&out).into_owned();
    assert!(err.is_empty() || exit.status() != 0, "stderr: {}", String::from_utf8_lossy(&err));
    (exit.status(), out)
}

#[test]
fn a_vm_pauses_snapshots_and_restores_with_its_memory_and_clock() {
    if delegated_to_box("a_vm_pauses_snapshots_and_restores_with_its_memory_and_clock") {
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
    let vm = Vm::restore(&root.join("rw"), &rw.firecracker, &state, &mem, Duration::from_secs(60)).unwrap();
    assert_eq!(sh(&vm, Some("scientist"), "cat /tmp/marker ~/notes").1, "in-memory\nkept\n");
    // The guest's wall clock follows the host's, after boot and after a restore.
    let guest_now: u64 = sh(&vm, None, "date +%s").1.trim().parse().unwrap();
    let host_now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(guest_now.abs_diff(host_now) <= 5, "guest clock {guest_now}, host {host_now}");
    assert_eq!(vm.stop(Duration::from_secs(30)), StopKind::Clean);
    assert!(Vm::attach(vm.dir()).is_none());
    std::fs::remove_dir_all(&root).unwrap();
}
