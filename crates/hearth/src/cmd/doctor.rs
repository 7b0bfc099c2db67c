//! `hearth doctor`: can this host run hearth, and how?
//!
//! The KVM check is a real probe boot of our guest under Firecracker: an openable /dev/kvm
//! proves nothing (on nested clouds it opens and then guests die on their first exit).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use hearth_image::tools;
use hearth_vmm::probe::probe_boot;
use serde::Serialize;

use crate::paths::Paths;
use crate::table;

#[derive(clap::Args)]
pub(crate) struct DoctorArgs {
    #[arg(long)]
    json: bool,
    /// Skip the probe boot (then KVM's ability to run guests stays unknown).
    #[arg(long)]
    no_probe: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Serialize)]
struct Check {
    name: String,
    status: Status,
    detail: String,
    fix: String,
}

fn check(name: &str, status: Status, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check { name: name.into(), status, detail: detail.into(), fix: fix.into() }
}

/// Minimum free space in the data dir's file system for images and a few workstations.
const MIN_FREE_GIB: u64 = 10;

pub(crate) fn run(a: DoctorArgs, paths: &Paths) -> anyhow::Result<ExitCode> {
    let mut checks = Vec::new();
    let kvm_dev = kvm_device();
    let kvm_runs = if a.no_probe { None } else { Some(kvm_runs_guests(paths, kvm_dev.status == Status::Ok)) };
    checks.push(kvm_dev);
    let guests_run = kvm_runs.as_ref().is_some_and(|c| c.status == Status::Ok);
    if let Some(c) = kvm_runs {
        checks.push(c);
    }
    let qemu = tools::find("qemu-system-x86_64");
    checks.push(match (&qemu, guests_run) {
        (Some(p), _) => check("qemu (the box)", Status::Ok, p.display().to_string(), ""),
        (None, true) => check("qemu (the box)", Status::Warn, "not installed; not needed while KVM runs guests", "apt-get install qemu-system-x86"),
        (None, false) => check("qemu (the box)", Status::Fail, "not installed, and KVM cannot run guests here", "apt-get install qemu-system-x86"),
    });
    // Workstations need these on the host that runs Firecracker: here, or inside the box
    // (which brings its own), so they only fail when KVM runs guests directly.
    checks.push(file_check("/dev/net/tun", "tun device", "modprobe tun (workstation networking needs it)", guests_run));
    checks.push(file_check("/sys/fs/cgroup/cgroup.controllers", "cgroup v2", "boot with systemd.unified_cgroup_hierarchy=1", guests_run));
    checks.push(disk_check(&paths.data_dir));
    checks.push(match Path::new(hearth_image::kernel::SOURCE_TARBALL).exists() {
        true => check("kernel source", Status::Ok, hearth_image::kernel::SOURCE_TARBALL, ""),
        false => check("kernel source", Status::Warn, "linux-source-6.1 not installed (needed to build kernels)", "apt-get install linux-source-6.1"),
    });
    for (tool, package) in tools::all_tools().filter(|(t, _)| *t != "qemu-system-x86_64") {
        checks.push(match tools::find(tool) {
            Some(p) => check(&format!("tool {tool}"), Status::Ok, p.display().to_string(), ""),
            None => check(&format!("tool {tool}"), Status::Warn, "missing (needed to build images)", format!("apt-get install {package}")),
        });
    }
    let verdict = if guests_run {
        "workstations run directly on this host's KVM"
    } else if qemu.is_some() {
        "KVM here cannot run guests: hearth will use the box (QEMU-emulated KVM host; slower, complete)"
    } else {
        "hearth cannot run workstations here: fix the failures above"
    };
    let usable = guests_run || qemu.is_some();
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"checks": checks, "verdict": verdict, "usable": usable, "mode": if guests_run { "kvm" } else if usable { "box" } else { "none" }})
            )?
        );
    } else {
        let rows: Vec<Vec<String>> = checks.iter().map(|c| vec![c.name.clone(), format!("{:?}", c.status).to_lowercase(), c.detail.clone(), c.fix.clone()]).collect();
        table::print(&["CHECK", "STATUS", "DETAIL", "FIX"], &rows);
        println!("\n{verdict}");
    }
    Ok(if usable { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn kvm_device() -> Check {
    match std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        Ok(_) => check("kvm device", Status::Ok, "/dev/kvm opens read-write", ""),
        Err(e) => check("kvm device", Status::Warn, format!("/dev/kvm: {e}"), "enable virtualization / load kvm; else the box is used"),
    }
}

/// Whether this host's KVM runs our guests (a real probe boot), and what was seen.
pub(crate) fn guests_run_here(paths: &Paths) -> (bool, String) {
    let dev = kvm_device();
    let runs = kvm_runs_guests(paths, dev.status == Status::Ok);
    (runs.status == Status::Ok, runs.detail)
}

fn kvm_runs_guests(paths: &Paths, device_ok: bool) -> Check {
    const NAME: &str = "kvm runs guests";
    if !device_ok {
        return check(NAME, Status::Warn, "no usable /dev/kvm: hearth will use the box", "");
    }
    let spec = match crate::cmd::probe::spec_from_cache(&paths.cache(), paths, Duration::from_secs(15), 1, 128) {
        Ok(s) => s,
        Err(e) => return check(NAME, Status::Warn, format!("unknown, no probe boot: {e:#}"), "hearth image build"),
    };
    let result = probe_boot(&spec);
    let _ = std::fs::remove_dir_all(&spec.work_dir);
    match result {
        Ok(r) if r.ready => check(NAME, Status::Ok, format!("probe boot: agent ready {:.0} ms after InstanceStart", r.instance_start_to_ready_ms.unwrap_or(0.0)), ""),
        Ok(r) => check(NAME, Status::Warn, format!("KVM present but guests do not run; hearth will use the box ({})", r.failure.unwrap_or_default()), ""),
        Err(e) => check(NAME, Status::Warn, format!("probe boot could not run: {e}"), "hearth image build"),
    }
}

fn file_check(path: &str, name: &str, fix: &str, needed_here: bool) -> Check {
    match (Path::new(path).exists(), needed_here) {
        (true, _) => check(name, Status::Ok, path, ""),
        (false, true) => check(name, Status::Fail, format!("{path} missing"), fix),
        (false, false) => check(name, Status::Warn, format!("{path} missing (not needed: the box has its own)"), fix),
    }
}

fn disk_check(data_dir: &Path) -> Check {
    // The data dir may not exist yet: measure its nearest existing ancestor.
    let existing = data_dir.ancestors().find(|p| p.exists()).unwrap_or(Path::new("/"));
    match nix::sys::statvfs::statvfs(existing) {
        Ok(s) => {
            let free_gib = (s.blocks_available() * s.fragment_size()) >> 30;
            let detail = format!("{free_gib} GiB free at {}", existing.display());
            if free_gib >= MIN_FREE_GIB {
                check("free disk", Status::Ok, detail, "")
            } else {
                check("free disk", Status::Warn, detail, format!("free at least {MIN_FREE_GIB} GiB"))
            }
        }
        Err(e) => check("free disk", Status::Warn, format!("statvfs {}: {e}", existing.display()), ""),
    }
}
