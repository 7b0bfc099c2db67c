//! The QEMU command line that boots the box.
//!
//! Facts that cost days (DESIGN.md): `-M q35` (microvm panics at boot most of the time),
//! `-accel tcg,thread=multi -cpu max` (TCG's max CPU has SVM with nested paging),
//! `random.trust_cpu=on` (else Firecracker stalls on entropy), `quiet` console.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::{CACHE_TAG, CONTROL_PORT, SHARE_TAG};

#[derive(Debug, Clone)]
pub struct BoxSpec {
    pub kernel: PathBuf,
    pub rootfs: PathBuf,
    pub data_disk: PathBuf,
    /// Read-only 9p share holding the hearth binary and the box token.
    pub share_dir: PathBuf,
    /// Read-only 9p share of the artifact cache.
    pub cache_dir: PathBuf,
    pub console_log: PathBuf,
    pub pid_file: PathBuf,
    pub cpus: u32,
    pub mem_mib: u64,
    /// Host loopback port forwarded to the control server.
    pub control_port: u16,
    /// More host loopback ports forwarded into the box: (host, box).
    pub forwards: Vec<(u16, u16)>,
    /// Let the box reach the outside network (QEMU user networking without `restrict=on`).
    pub egress: bool,
    /// QEMU's human monitor on a unix socket, for post-mortems of a box that stopped
    /// answering (`info cpus`, `info registers`).
    pub monitor: Option<PathBuf>,
}

/// `kvm.tdp_mmu=0`: the legacy MMU zaps a killed VM's page tables synchronously; with the
/// TDP MMU the tail of boots after a kill was longer (p95 3.2 s vs 2.6 s over 10 boots).
/// `unknown_nmi_panic panic_print=0x40`: an NMI from QEMU's monitor (nothing else sends the
/// box one) makes its kernel print every CPU's stack and end, the post-mortem of a wedged box
/// ([`crate::host::BoxDir::nmi_backtraces`]).
/// `kvm.tsc_tolerance_ppm=10000`: the box calibrates its TSC at each boot, and under the
/// emulated CPU the result differs from boot to boot by more than KVM's default 250 ppm. A
/// workstation hibernated in one box run and woken in the next asks for its snapshot's TSC
/// rate; without TSC scaling (none here) KVM refuses a rate below the box's beyond the
/// tolerance ("Could not set TSC scaling within the snapshot", seen in 2 of 5 restarts),
/// and the wake became a cold boot. Within 1 % the guest keeps its rate (kvm-clock keeps its
/// time right; the agent sets its wall clock at each wake).
pub const KERNEL_ARGS: &str =
    "console=ttyS0 quiet random.trust_cpu=on kvm.tdp_mmu=0 kvm.tsc_tolerance_ppm=10000 unknown_nmi_panic panic_print=0x40 root=/dev/vda ro rootfstype=ext4 init=/init panic=-1";

/// On the box's kernel command line when its QEMU lets traffic out.
pub const EGRESS_ARG: &str = "hearth.box_egress=1";

pub fn args(spec: &BoxSpec) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |parts: &[&str]| a.extend(parts.iter().map(OsString::from));
    push(&["-M", "q35", "-accel", "tcg,thread=multi", "-cpu", "max"]);
    push(&["-smp", &spec.cpus.to_string(), "-m", &spec.mem_mib.to_string()]);
    push(&["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"]);
    push(&["-serial", &format!("file:{}", spec.console_log.display())]);
    push(&["-pidfile", &spec.pid_file.to_string_lossy()]);
    if let Some(m) = &spec.monitor {
        push(&["-monitor", &format!("unix:{},server=on,wait=off", m.display())]);
    }
    // A box with egress gets a default route from its init (`EGRESS_ARG`); one without has
    // none, so namespaces made in it (a test's fake internet) may route as they like.
    let append = if spec.egress { format!("{KERNEL_ARGS} {EGRESS_ARG}") } else { KERNEL_ARGS.to_string() };
    push(&["-kernel", &spec.kernel.to_string_lossy(), "-append", &append]);
    push(&["-drive", &format!("file={},format=raw,if=virtio,readonly=on", spec.rootfs.display())]);
    push(&["-drive", &format!("file={},format=raw,if=virtio", spec.data_disk.display())]);
    for (dir, tag) in [(&spec.share_dir, SHARE_TAG), (&spec.cache_dir, CACHE_TAG)] {
        push(&["-virtfs", &format!("local,path={},mount_tag={tag},security_model=none,readonly=on", dir.display())]);
    }
    let restrict = if spec.egress { "off" } else { "on" };
    let mut netdev = format!("user,id=net0,restrict={restrict},hostfwd=tcp:127.0.0.1:{}-:{CONTROL_PORT}", spec.control_port);
    for (host, guest) in &spec.forwards {
        netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
    }
    push(&["-netdev", &netdev]);
    push(&["-device", "virtio-net-pci,netdev=net0"]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> BoxSpec {
        BoxSpec {
            kernel: "/c/vmlinux".into(),
            rootfs: "/c/box.ext4".into(),
            data_disk: "/b/data.ext4".into(),
            share_dir: "/b/share".into(),
            cache_dir: "/c".into(),
            console_log: "/b/console.log".into(),
            pid_file: "/b/qemu.pid".into(),
            cpus: 2,
            mem_mib: 4096,
            control_port: 40000,
            forwards: vec![(8080, 8080)],
            egress: false,
            monitor: Some("/b/monitor.sock".into()),
        }
    }

    #[test]
    fn command_line_has_the_flags_that_matter() {
        let a: Vec<String> = args(&spec()).into_iter().map(|s| s.into_string().unwrap()).collect();
        let joined = a.join(" ");
        for needle in [
            "-M q35",
            "-accel tcg,thread=multi",
            "-cpu max",
            "random.trust_cpu=on",
            "restrict=on",
            "hostfwd=tcp:127.0.0.1:40000-:7070,hostfwd=tcp:127.0.0.1:8080-:8080",
            "file=/c/box.ext4,format=raw,if=virtio,readonly=on",
            "-no-reboot",
            "mount_tag=hearth-cache,security_model=none,readonly=on",
            "-monitor unix:/b/monitor.sock,server=on,wait=off",
        ] {
            assert!(joined.contains(needle), "missing {needle}: {joined}");
        }
        // The kernel command line is one argument.
        assert!(a.contains(&KERNEL_ARGS.to_string()));
    }

    #[test]
    fn egress_tells_the_box_to_route_out() {
        let joined = |s: &BoxSpec| args(s).into_iter().map(|a| a.into_string().unwrap()).collect::<Vec<_>>().join(" ");
        let mut s = spec();
        assert!(!joined(&s).contains(EGRESS_ARG));
        s.egress = true;
        assert!(joined(&s).contains(&format!("panic=-1 {EGRESS_ARG}")));
    }

    #[test]
    fn egress_lifts_restrict() {
        let mut s = spec();
        s.egress = true;
        let joined: Vec<String> = args(&s).into_iter().map(|s| s.into_string().unwrap()).collect();
        assert!(joined.join(" ").contains("restrict=off"));
    }
}
