//! One benchmark guest in the box (shared by `#[path]` between the benchmark examples): its
//! configuration from the shared artifact cache, a fresh directory for it, commands run in it.

use std::path::PathBuf;
use std::time::Duration;

use hearth_image::{refs, Cache};
use hearth_proto::control::ExecSpec;
use hearth_vmm::vm::{Overlay, Vm, VmConfig};

/// The datascience image on the guest kernel: `vcpus`, 512 MiB, read-only with a tmpfs
/// upper, unjailed, no network.
pub(crate) fn bench_vm_config(vcpus: u8) -> VmConfig {
    let cache = Cache::new(std::env::var("HEARTH_CACHE_DIR").expect("HEARTH_CACHE_DIR (run in the box)"));
    let file = |name: &str, f: &str| cache.resolve_file(name, f).expect("artifacts built");
    VmConfig {
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
    }
}

/// `$HEARTH_DATA_DIR/<name>`, emptied.
#[allow(dead_code)] // net_bench launches into a directory it does not make itself
pub(crate) fn fresh_dir(name: &str) -> PathBuf {
    let root = PathBuf::from(std::env::var("HEARTH_DATA_DIR").expect("HEARTH_DATA_DIR")).join(name);
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    root
}

/// Runs `argv` in the guest; its trimmed stdout (it must exit 0).
#[allow(dead_code)] // not every bench runs commands in its guest
pub(crate) fn guest_out(vm: &Vm, argv: &[&str]) -> String {
    let (exit, out, err) = vm.agent(Duration::from_secs(30)).unwrap().exec_collect(ExecSpec::new(argv.iter().copied())).unwrap();
    assert_eq!(exit.status(), 0, "{argv:?}: {}", String::from_utf8_lossy(&err));
    String::from_utf8_lossy(&out).trim().to_string()
}
