//! Workstation VMs through the hearth-vmm library, with the real Firecracker: in the box.
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

fn sha256(path: &Path) -> String {
    hearth_image::hash::sha256_file(path).unwrap()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn workstation_lifecycle_with_overlay_and_read_only_disks() {
    if delegated_to_box("workstation_lifecycle_with_overlay_and_read_only_disks") {
        return;
    }
    let cache = Cache::new(common::cache_dir());
    let root: PathBuf = PathBuf::from(std::env::var("HEARTH_DATA_DIR").unwrap()).join(format!("vm-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let overlay = root.join("overlay.ext4");
    create_ext4_disk(&overlay, 512 << 20, Path::new("mkfs.ext4")).unwrap();
    let rw = config(&cache, Overlay::Disk(overlay.clone()), "ws-rw");
    let base_sum = sha256(&rw.base_image);

    // Boot, exec as the image's user, hostname from the host, a file in the home.
    let vm = Vm::launch(&root.join("rw"), &rw, Duration::from_secs(120)).unwrap();
    assert_eq!(sh(&vm, Some("scientist"), "echo kept > ~/notes; hostname; id -un; cat ~/notes"), (0, "ws-rw\nscientist\nkept\n".into()));
    // Re-attach as a later process would, by directory.
    let again = Vm::attach(vm.dir()).expect("re-attach to the running VM");
    assert_eq!(again.pid(), vm.pid());

    // A second, read-only workstation at the same time (2 vCPUs each).
    let ro = config(&cache, Overlay::Tmpfs, "ws-ro");
    let vm2 = Vm::launch(&root.join("ro"), &ro, Duration::from_secs(120)).unwrap();
    assert_eq!(sh(&vm2, Some("scientist"), "echo gone > ~/scratch && cat ~/scratch && nproc"), (0, "gone\n2\n".into()));
    assert!(vm.is_running() && vm2.is_running());

    // Stop cleanly, start again: the overlay disk kept the file, the tmpfs upper did not.
    assert_eq!(vm.stop(Duration::from_secs(30)), StopKind::Clean);
    assert!(!vm.is_running());
    assert_eq!(files_in(vm.dir()), ["console.log"], "a stopped VM keeps only its console log");
    assert_eq!(vm2.stop(Duration::from_secs(30)), StopKind::Clean);
    let vm = Vm::launch(&root.join("rw"), &rw, Duration::from_secs(120)).unwrap();
    assert_eq!(sh(&vm, Some("scientist"), "cat ~/notes"), (0, "kept\n".into()));
    let vm2 = Vm::launch(&root.join("ro"), &ro, Duration::from_secs(120)).unwrap();
    assert_eq!(sh(&vm2, None, "test -e /home/scientist/scratch; echo $?").1, "1\n");
    assert_eq!(sh(&vm2, None, "echo root-write > /etc/hearth-test && cat /etc/hearth-test").1, "root-write\n");
    vm2.stop(Duration::from_secs(30));

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

    // SIGKILL: the VM is gone, its console log stays for the post-mortem.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(vm.pid() as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(hearth_init::proc::wait_gone(vm.pid(), "firecracker", Duration::from_secs(5)));
    assert!(Vm::attach(vm.dir()).is_none());
    assert!(std::fs::read_to_string(vm.console_log()).unwrap().contains("hearth-agent: ready"));
    assert_eq!(vm.stop(Duration::from_secs(5)), StopKind::NotRunning);

    // A guest that never becomes ready: launch fails with the console tail, nothing left running.
    let mut broken = ro.clone();
    broken.extra_boot_args = vec!["init=/bin/false".into()];
    let err = Vm::launch(&root.join("broken"), &broken, Duration::from_secs(60)).unwrap_err().to_string();
    assert!(err.contains("Kernel panic") || err.contains("Attempted to kill init"), "{err}");
    assert!(Vm::attach(&root.join("broken")).is_none());

    // Nothing wrote the shared base image.
    assert_eq!(sha256(&rw.base_image), base_sum);
    // Delete: no process is left, and removing the directory removes everything it owned.
    for d in ["rw", "ro", "broken"] {
        assert!(Vm::attach(&root.join(d)).is_none(), "{d} still running");
    }
    std::fs::remove_dir_all(&root).unwrap();
}
