//! A throwaway boot: Firecracker + guest kernel + root filesystem, up to the agent's
//! readiness line on the serial console, then killed.
//!
//! It answers "can this host run our guests?" (hearth doctor) and "how long does a boot take?"
//! (the boot check and its benchmark). A guest that does not come up is a normal outcome
//! reported in [`ProbeReport`], not an error; errors are for a probe that could not even run.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;

use hearth_exec::ExecClient;
use hearth_proto::control::{ExecSpec, AGENT_VSOCK_PORT};

use crate::models::{ActionType, BootSource, Drive, InstanceAction, MachineConfig, Vsock};
use crate::process::{Firecracker, VmmError};
use crate::{AGENT_READY_PREFIX, GUEST_BOOT_ARGS};

/// How many console lines a report keeps.
const TAIL_LINES: usize = 30;

#[derive(Debug, Clone)]
pub struct ProbeSpec {
    pub firecracker: PathBuf,
    pub kernel: PathBuf,
    pub rootfs: PathBuf,
    /// Holds the API socket and the console log of this probe.
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
    pub spawn_to_api_ms: f64,
    /// How long Firecracker took to answer the InstanceStart call (loads the kernel, starts vCPUs).
    pub instance_start_call_ms: f64,
    /// InstanceStart sent → the agent's readiness line read from the console.
    pub instance_start_to_ready_ms: Option<f64>,
    /// The guest's own uptime when the agent announced itself.
    pub guest_boot_ms: Option<u64>,
    /// Why the guest did not come up, when it did not.
    pub failure: Option<String>,
    pub console_tail: Vec<String>,
    pub console_log: PathBuf,
    pub exec: Option<ExecOutcome>,
}

/// Boots once and reports. The Firecracker process is always killed and reaped before return.
pub fn probe_boot(spec: &ProbeSpec) -> Result<ProbeReport, VmmError> {
    std::fs::create_dir_all(&spec.work_dir)
        .map_err(|source| VmmError::Io { what: format!("creating {}", spec.work_dir.display()), source })?;
    let socket = spec.work_dir.join("api.sock");
    let vsock_uds = spec.work_dir.join("v.sock");
    // Its path is the VM's: a file left by an earlier VM would make this one fail.
    let _ = std::fs::remove_file(&vsock_uds);
    let console_log = spec.work_dir.join("console.log");
    let (reader, writer) = std::io::pipe().map_err(|source| VmmError::Io { what: "creating a pipe".into(), source })?;
    let writer2 = writer.try_clone().map_err(|source| VmmError::Io { what: "cloning a pipe".into(), source })?;

    let t_spawn = Instant::now();
    let mut fc = Firecracker::spawn(&spec.firecracker, &socket, "probe", Stdio::from(writer), Stdio::from(writer2))?;
    let spawn_to_api = t_spawn.elapsed();
    let lines = follow_lines(reader, &console_log)?;

    let api = fc.api().clone();
    api.put("/boot-source", &BootSource {
        kernel_image_path: path_str(&spec.kernel),
        boot_args: std::iter::once(GUEST_BOOT_ARGS).chain(spec.extra_boot_args.iter().map(String::as_str)).collect::<Vec<_>>().join(" "),
        initrd_path: None,
    })?;
    api.put("/drives/rootfs", &Drive {
        drive_id: "rootfs".into(),
        path_on_host: path_str(&spec.rootfs),
        is_root_device: true,
        is_read_only: true,
    })?;
    api.put("/machine-config", &MachineConfig { vcpu_count: spec.vcpus, mem_size_mib: spec.mem_mib, smt: None })?;
    api.put("/vsock", &Vsock { guest_cid: 3, uds_path: path_str(&vsock_uds) })?;
    let t_start = Instant::now();
    api.put("/actions", &InstanceAction { action_type: ActionType::InstanceStart })?;
    let instance_start_call = t_start.elapsed();

    let deadline = t_start + spec.timeout;
    let mut tail = Vec::new();
    let mut outcome = Err(format!("no readiness line within {:?}", spec.timeout));
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok((at, line)) => {
                if let Some(rest) = line.split_once(AGENT_READY_PREFIX).map(|(_, r)| r) {
                    outcome = Ok((at.duration_since(t_start), parse_boot_ms(rest)));
                    push_tail(&mut tail, line);
                    break;
                }
                push_tail(&mut tail, line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => break,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = fc.try_wait().map(|s| s.to_string()).unwrap_or_else(|| "closed its output".into());
                outcome = Err(format!("Firecracker exited before the agent was ready ({status})"));
                break;
            }
        }
    }
    let exec = match (&outcome, &spec.exec) {
        (Ok(_), Some(e)) => Some(exec_in_guest(&vsock_uds, e.clone())),
        _ => None,
    };
    fc.kill();
    let _ = std::fs::remove_file(&vsock_uds);
    let (ready, start_to_ready, guest_boot_ms, failure) = match outcome {
        Ok((d, boot)) => (true, Some(ms(d)), boot, None),
        Err(why) => (false, None, None, Some(explain(&why, &tail))),
    };
    Ok(ProbeReport {
        ready,
        spawn_to_api_ms: ms(spawn_to_api),
        instance_start_call_ms: ms(instance_start_call),
        instance_start_to_ready_ms: start_to_ready,
        guest_boot_ms,
        failure,
        console_tail: tail,
        console_log,
        exec,
    })
}

/// Most of a command's output kept in a report.
const MAX_KEPT_OUTPUT: usize = 64 << 10;

/// Runs one command through the agent's control protocol over vsock.
fn exec_in_guest(uds: &Path, spec: ExecSpec) -> ExecOutcome {
    let started = Instant::now();
    let result = crate::vsock::connect(uds, AGENT_VSOCK_PORT, Duration::from_secs(10))
        .map_err(|e| e.to_string())
        .and_then(|s| ExecClient::hello(s, None, Duration::from_secs(10)).map_err(|e| e.to_string()))
        .and_then(|c| c.exec_collect(spec).map_err(|e| e.to_string()));
    let keep = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(MAX_KEPT_OUTPUT)]).into_owned();
    match result {
        Ok((exit, out, err)) => ExecOutcome {
            status: Some(exit.status()),
            stdout: keep(&out),
            stderr: keep(&err),
            round_trip_ms: ms(started.elapsed()),
            error: None,
        },
        Err(e) => ExecOutcome { status: None, stdout: String::new(), stderr: String::new(), round_trip_ms: ms(started.elapsed()), error: Some(e) },
    }
}

/// Reads output lines on a thread, copies them to `log`, and sends each with its arrival time.
fn follow_lines(reader: std::io::PipeReader, log: &Path) -> Result<mpsc::Receiver<(Instant, String)>, VmmError> {
    let mut file = std::fs::File::create(log)
        .map_err(|source| VmmError::Io { what: format!("creating {}", log.display()), source })?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(reader);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let at = Instant::now();
                    let _ = file.write_all(&buf);
                    let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                    // The receiver may be gone (probe finished): keep draining so the VMM never blocks.
                    let _ = tx.send((at, line));
                }
            }
        }
    });
    Ok(rx)
}

fn push_tail(tail: &mut Vec<String>, line: String) {
    if tail.len() == TAIL_LINES {
        tail.remove(0);
    }
    tail.push(line);
}

fn parse_boot_ms(rest: &str) -> Option<u64> {
    rest.split_whitespace().find_map(|w| w.strip_prefix("boot_ms=")).and_then(|v| v.parse().ok())
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_line_yields_boot_time() {
        assert_eq!(parse_boot_ms(" boot_ms=812 version=0.1.0"), Some(812));
        assert_eq!(parse_boot_ms(" version=0.1.0"), None);
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
