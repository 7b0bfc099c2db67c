//! `hearth probe`: boot throwaway workstation VMs (guest kernel + default image) to the
//! agent's readiness line, one after another, and report each boot and the median/p95.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use hearth_image::{refs, Cache};
use hearth_proto::control::ExecSpec;
use hearth_vmm::probe::{probe_boot, ProbeReport, ProbeSpec};

use crate::paths::Paths;
use crate::table;

#[derive(clap::Args)]
pub(crate) struct ProbeArgs {
    /// Number of boots (sequential; each VM is killed before the next boots).
    #[arg(long, default_value_t = 1)]
    count: u32,
    /// Seconds to wait for the agent's readiness line.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    #[arg(long, default_value_t = 1)]
    vcpus: u8,
    #[arg(long, default_value_t = 256)]
    mem_mib: u32,
    #[arg(long)]
    json: bool,
    /// Extra guest kernel argument for diagnostics (repeatable), e.g. `--boot-arg printk.time=1`.
    #[arg(long = "boot-arg")]
    boot_args: Vec<String>,
    /// Keep the probe's work directory (the last boot's console.log) and print its path.
    #[arg(long)]
    keep: bool,
    /// Run the command (after --) as this user of the image.
    #[arg(long)]
    user: Option<String>,
    /// A command to run in each guest through the agent once it is ready; its output is
    /// printed and the probe fails if it fails.
    #[arg(last = true)]
    command: Vec<String>,
}

/// The probe spec for the cached artifacts, or an error naming what is missing.
pub(crate) fn spec_from_cache(cache: &Cache, paths: &Paths, timeout: Duration, vcpus: u8, mem_mib: u32) -> anyhow::Result<ProbeSpec> {
    Ok(ProbeSpec {
        firecracker: cache.resolve_file(refs::FIRECRACKER, "firecracker")?,
        kernel: cache.resolve_file(refs::GUEST_KERNEL, "vmlinux")?,
        rootfs: cache.resolve_file(&refs::rootfs(refs::DEFAULT_RECIPE), "rootfs.ext4")?,
        work_dir: paths.data_dir.join("probe").join(std::process::id().to_string()),
        vcpus,
        mem_mib,
        timeout,
        extra_boot_args: vec![],
        exec: None,
    })
}

pub(crate) fn run(a: ProbeArgs, paths: &Paths) -> anyhow::Result<ExitCode> {
    anyhow::ensure!((1..=1000).contains(&a.count), "--count must be 1..=1000");
    let mut spec = spec_from_cache(&paths.cache(), paths, Duration::from_secs(a.timeout), a.vcpus, a.mem_mib)?;
    spec.extra_boot_args = a.boot_args.clone();
    if !a.command.is_empty() {
        spec.exec = Some(ExecSpec { user: a.user.clone(), timeout_secs: Some(a.timeout), ..ExecSpec::new(a.command.clone()) });
    }
    let mut reports: Vec<ProbeReport> = Vec::new();
    for i in 0..a.count {
        let r = probe_boot(&spec).with_context(|| format!("probe boot {}", i + 1))?;
        if !a.json {
            match (&r.instance_start_to_ready_ms, &r.failure) {
                (Some(ms), _) => eprintln!("boot {}: agent ready {ms:.0} ms after InstanceStart (guest uptime {} ms)", i + 1, r.guest_boot_ms.unwrap_or(0)),
                (None, Some(why)) => eprintln!("boot {}: not ready: {why}\nconsole tail:\n{}", i + 1, r.console_tail.join("\n")),
                (None, None) => {}
            }
        }
        if let (Some(e), false) = (&r.exec, a.json) {
            print!("{}", e.stdout);
            eprint!("{}", e.stderr);
            match (&e.error, e.status) {
                (Some(err), _) => eprintln!("boot {}: exec failed: {err}", i + 1),
                (None, Some(s)) => eprintln!("boot {}: command exited {s} ({:.0} ms round trip)", i + 1, e.round_trip_ms),
                (None, None) => {}
            }
        }
        reports.push(r);
    }
    if a.keep {
        eprintln!("probe files kept in {}", spec.work_dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&spec.work_dir);
    }
    let mut ready: Vec<f64> = reports.iter().filter_map(|r| r.instance_start_to_ready_ms).collect();
    ready.sort_by(f64::total_cmp);
    let summary = serde_json::json!({
        "boots": reports.len(),
        "ready": ready.len(),
        "instance_start_to_ready_ms": {
            "min": ready.first(), "median": percentile(&ready, 0.5), "p95": percentile(&ready, 0.95), "max": ready.last(),
        },
    });
    if a.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"summary": summary, "reports": reports}))?);
    } else {
        let f = |v: Option<f64>| v.map(|x| format!("{x:.0} ms")).unwrap_or_else(|| "-".into());
        // With a command, stdout is the command's: the summary goes to stderr.
        let mut out: Box<dyn std::io::Write> = if a.command.is_empty() { Box::new(std::io::stdout()) } else { Box::new(std::io::stderr()) };
        table::write(
            &mut out,
            &["BOOTS", "READY", "MIN", "MEDIAN", "P95", "MAX"],
            &[vec![
                reports.len().to_string(),
                ready.len().to_string(),
                f(ready.first().copied()),
                f(percentile(&ready, 0.5)),
                f(percentile(&ready, 0.95)),
                f(ready.last().copied()),
            ]],
        )?;
    }
    let exec_ok = reports.iter().all(|r| r.exec.as_ref().is_none_or(|e| e.status == Some(0)));
    let ok = ready.len() == reports.len() && exec_ok;
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Nearest-rank percentile of sorted values.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(5.0));
        assert_eq!(percentile(&v, 0.95), Some(10.0));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[3.0], 0.95), Some(3.0));
    }
}
