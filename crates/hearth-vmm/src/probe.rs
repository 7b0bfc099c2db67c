//! A throwaway workstation boot: [`Vm::launch`] with a memory-only upper layer, timed, an
//! optional command run through the agent, then killed.
//!
//! It answers "can this host run our guests?" (hearth doctor) and "how long does a boot take?"
//! (the boot check and its benchmark). A guest that does not come up is a normal outcome
//! reported in [`ProbeReport`], not an error; errors are for a probe that could not even run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hearth_proto::control::ExecSpec;
use serde::Serialize;

use crate::error::VmmError;
use crate::vm::{Overlay, Vm, VmConfig};

/// How many console lines a report keeps.
const TAIL_LINES: usize = 30;
/// Most of a command's output kept in a report.
const MAX_KEPT_OUTPUT: usize = 64 << 10;

#[derive(Debug, Clone)]
pub struct ProbeSpec {
    pub firecracker: PathBuf,
    pub kernel: PathBuf,
    pub rootfs: PathBuf,
    /// The probe VM's directory (sockets, console log).
    pub work_dir: PathBuf,
    pub vcpus: u8,
    pub mem_mib: u32,
    pub timeout: Duration,
    /// Appended to the guest kernel command line (diagnostics: `printk.time=1`, say).
    pub extra_boot_args: Vec<String>,
    /// A command to run through the agent (over vsock) once it is ready.
    pub exec: Option<ExecSpec>,
}

/// What the command run through the agent did.
#[derive(Debug, Clone, Serialize)]
pub struct ExecOutcome {
    /// Exit status (128 + signal when killed); absent when the exec itself failed.
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Agent ready → vsock connected, hello, command run, exit received.
    pub round_trip_ms: f64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub ready: bool,
    /// Firecracker spawned → API socket accepting.
    pub spawn_to_api_ms: Option<f64>,
    /// How long Firecracker took to answer the InstanceStart call (loads the kernel, starts vCPUs).
    pub instance_start_call_ms: Option<f64>,
    /// InstanceStart sent → the agent's readiness line read from the console.
    pub instance_start_to_ready_ms: Option<f64>,
    /// The guest's own uptime when the agent announced itself.
    pub guest_boot_ms: Option<u64>,
    /// Boots it took (see `Vm::launch_timed`).
    pub attempts: u32,
    /// Why the guest did not come up, when it did not.
    pub failure: Option<String>,
    pub console_tail: Vec<String>,
    pub console_log: PathBuf,
    pub exec: Option<ExecOutcome>,
}

/// Boots once and reports. The VM is always killed before return.
pub fn probe_boot(spec: &ProbeSpec) -> Result<ProbeReport, VmmError> {
    let cfg = VmConfig {
        firecracker: spec.firecracker.clone(),
        kernel: spec.kernel.clone(),
        base_image: spec.rootfs.clone(),
        overlay: Overlay::Tmpfs,
        vcpus: spec.vcpus,
        mem_mib: spec.mem_mib,
        smt: false,
        hostname: "probe".into(),
        extra_boot_args: spec.extra_boot_args.clone(),
        network: None,
        jail: None,
    };
    let console_log = spec.work_dir.join("console.log");
    // One probe's console per report.
    let _ = std::fs::remove_file(&console_log);
    let mut report = ProbeReport {
        ready: false,
        spawn_to_api_ms: None,
        instance_start_call_ms: None,
        instance_start_to_ready_ms: None,
        guest_boot_ms: None,
        attempts: 0,
        failure: None,
        console_tail: vec![],
        console_log: console_log.clone(),
        exec: None,
    };
    match Vm::launch_timed(&spec.work_dir, &cfg, spec.timeout) {
        Ok((vm, t)) => {
            report.ready = true;
            report.spawn_to_api_ms = Some(t.spawn_to_api_ms);
            report.instance_start_call_ms = Some(t.instance_start_call_ms);
            report.instance_start_to_ready_ms = Some(t.instance_start_to_ready_ms);
            report.guest_boot_ms = t.guest_boot_ms;
            report.attempts = t.attempts;
            report.exec = spec.exec.clone().map(|e| exec_in_guest(&vm, e));
            vm.kill();
        }
        Err(VmmError::NotReady { why, console_tail }) => {
            let tail: Vec<String> = console_tail.lines().map(str::to_string).collect();
            report.failure = Some(explain(&why.to_string(), &tail));
        }
        Err(e) => return Err(e),
    }
    report.console_tail = last_lines(&console_log, TAIL_LINES);
    Ok(report)
}

/// Runs one command through the agent's control protocol over vsock.
fn exec_in_guest(vm: &Vm, spec: ExecSpec) -> ExecOutcome {
    let started = Instant::now();
    let result = vm.agent(Duration::from_secs(10)).map_err(|e| e.to_string()).and_then(|c| c.exec_collect(spec).map_err(|e| e.to_string()));
    let keep = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(MAX_KEPT_OUTPUT)]).into_owned();
    let round_trip_ms = crate::vm::ms(started.elapsed());
    match result {
        Ok((exit, out, err)) => ExecOutcome { status: Some(exit.status()), stdout: keep(&out), stderr: keep(&err), round_trip_ms, error: None },
        Err(e) => ExecOutcome { status: None, stdout: String::new(), stderr: String::new(), round_trip_ms, error: Some(e) },
    }
}

fn last_lines(path: &Path, n: usize) -> Vec<String> {
    let text = std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let lines: Vec<String> = text.lines().map(|l| l.trim_end().to_string()).collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// Names the failure from what Firecracker printed, where it says something specific.
fn explain(why: &str, tail: &[String]) -> String {
    if tail.iter().any(|l| l.contains("KVM_EXIT_INTERNAL_ERROR")) {
        return format!("{why}: the guest died with KVM_EXIT_INTERNAL_ERROR (this KVM cannot run our guests)");
    }
    match tail.iter().rev().find(|l| l.contains("Error") || l.contains("error") || l.contains("panic")) {
        Some(line) => format!("{why}: last error line: {line}"),
        None => why.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_line_yields_boot_time() {
        assert_eq!(crate::vm::parse_boot_ms(" boot_ms=812 version=0.1.0\r\nmore"), Some(812));
        assert_eq!(crate::vm::parse_boot_ms(" version=0.1.0"), None);
    }

    #[test]
    fn kvm_internal_error_is_named() {
        let tail = vec!["[ERROR] Vcpu: Unexpected exit reason on vcpu run: KVM_EXIT_INTERNAL_ERROR".to_string()];
        assert!(explain("exited", &tail).contains("this KVM cannot run our guests"));
        assert_eq!(explain("timeout", &[]), "timeout");
    }

    #[test]
    fn a_missing_binary_is_a_spawn_error() {
        let dir = tempfile::tempdir().unwrap();
        let spec = ProbeSpec {
            firecracker: dir.path().join("no-such-firecracker"),
            kernel: dir.path().join("vmlinux"),
            rootfs: dir.path().join("rootfs.ext4"),
            work_dir: dir.path().join("probe"),
            vcpus: 1,
            mem_mib: 128,
            timeout: Duration::from_secs(1),
            extra_boot_args: vec![],
            exec: None,
        };
        assert!(matches!(probe_boot(&spec), Err(VmmError::Spawn { .. })));
    }
}
