//! `hearth image build|ls|gc`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Subcommand;
use hearth_image::{refs, BuildPlan, Recipe, Reporter};

use crate::paths::Paths;
use crate::table;

#[derive(Subcommand)]
pub(crate) enum ImageCmd {
    /// Build every artifact (or reuse it from the cache).
    Build {
        /// Build the guest image of this recipe directory instead of the embedded default
        /// (only that image: kernels, box and Firecracker are left as they are).
        #[arg(long)]
        recipe: Option<PathBuf>,
        /// The hearth-agent binary to put in guest images [default: next to this binary].
        #[arg(long, env = "HEARTH_AGENT_BIN")]
        agent: Option<PathBuf>,
    },
    /// List cached artifacts.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Remove artifacts no ref points at, and leftovers of interrupted builds.
    Gc,
}

pub(crate) fn run(cmd: ImageCmd, paths: &Paths) -> anyhow::Result<ExitCode> {
    match cmd {
        ImageCmd::Build { recipe, agent } => build(paths, recipe, agent),
        ImageCmd::Ls { json } => ls(paths, json),
        ImageCmd::Gc => {
            let cache = paths.cache();
            let _lock = cache.lock()?;
            let removed = cache.gc()?;
            for r in &removed {
                println!("removed {r}");
            }
            println!("{} removed", removed.len());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The agent binary: the flag, or `hearth-agent` beside this executable.
pub(crate) fn agent_path(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let path = match flag {
        Some(p) => p,
        None => std::env::current_exe().context("locating this executable")?.with_file_name("hearth-agent"),
    };
    if !path.is_file() {
        bail!("the guest agent binary {} is missing: build it (cargo build -p hearth-agent) or pass --agent", path.display());
    }
    Ok(path)
}

fn build(paths: &Paths, recipe_dir: Option<PathBuf>, agent: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let recipe = match &recipe_dir {
        Some(dir) => Recipe::load_dir(dir)?,
        None => Recipe::datascience(),
    };
    let plan = BuildPlan { agent: agent_path(agent)?, recipe, recipe_only: recipe_dir.is_some() };
    let cache = paths.cache();
    eprintln!("hearth: artifact cache at {}", cache.root().display());
    let report = hearth_image::build(&cache, &plan, &Reporter::new())?;
    let mut rows: Vec<Vec<String>> = report
        .built
        .iter()
        .map(|b| {
            vec![
                b.name.clone(),
                b.artifact.id(),
                if b.fresh { format!("built in {:.0} s", b.artifact.build_secs) } else { "cached".into() },
                table::bytes(b.artifact.apparent_bytes),
                table::bytes(b.artifact.disk_bytes),
            ]
        })
        .collect();
    rows.sort();
    table::print(&["NAME", "ARTIFACT", "STATUS", "SIZE", "ON DISK"], &rows);
    if report.errors.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for e in &report.errors {
        eprintln!("hearth: image build: {e}");
    }
    bail!("{} artifact(s) failed to build; cached artifacts were left as they were", report.errors.len())
}

/// Makes sure every artifact exists: builds what is missing (or, with `always`, checks
/// every input hash so a changed agent or recipe is rebuilt). Returns the cache.
pub(crate) fn ensure_artifacts(paths: &Paths, always: bool) -> anyhow::Result<hearth_image::Cache> {
    let cache = paths.cache();
    let names = [refs::GUEST_KERNEL, refs::BOX_KERNEL, refs::FIRECRACKER, refs::BOX_ROOTFS];
    let complete = names.iter().all(|n| cache.resolve(n).is_some()) && cache.resolve(&refs::rootfs(refs::DEFAULT_RECIPE)).is_some();
    if complete && !always {
        return Ok(cache);
    }
    let plan = BuildPlan { agent: agent_path(None)?, recipe: Recipe::datascience(), recipe_only: false };
    let report = hearth_image::build(&cache, &plan, &Reporter::new())?;
    if let Some(e) = report.errors.into_iter().next() {
        return Err(e).context("building the artifacts");
    }
    Ok(cache)
}

fn ls(paths: &Paths, json: bool) -> anyhow::Result<ExitCode> {
    let cache = paths.cache();
    let refs = cache.refs();
    let artifacts = cache.list();
    let names = |id: &str| refs.iter().filter(|(_, v)| v.as_str() == id).map(|(k, _)| k.clone()).collect::<Vec<_>>();
    if json {
        let v: Vec<serde_json::Value> = artifacts
            .iter()
            .map(|a| {
                serde_json::json!({
                    "kind": a.kind, "hash": a.hash, "refs": names(&a.id()), "path": a.dir,
                    "apparent_bytes": a.apparent_bytes, "disk_bytes": a.disk_bytes,
                    "built_at": a.built_at, "build_secs": a.build_secs,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = artifacts
        .iter()
        .map(|a| {
            vec![
                a.kind.clone(),
                a.hash.clone(),
                names(&a.id()).join(","),
                table::bytes(a.apparent_bytes),
                table::bytes(a.disk_bytes),
                format!("{:.0} s", a.build_secs),
                format_time(a.built_at),
            ]
        })
        .collect();
    table::print(&["KIND", "HASH", "REFS", "SIZE", "ON DISK", "BUILD", "BUILT AT (UTC)"], &rows);
    Ok(ExitCode::SUCCESS)
}

/// Unix seconds as `YYYY-MM-DD HH:MM` UTC (civil-from-days, no time-zone database needed).
pub(crate) fn format_time(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}", rem / 3600, rem % 3600 / 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_format_as_utc() {
        assert_eq!(super::format_time(0), "1970-01-01 00:00");
        assert_eq!(super::format_time(1_795_000_000), "2026-11-18 11:06");
    }
}
