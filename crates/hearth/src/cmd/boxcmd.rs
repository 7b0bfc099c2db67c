//! `hearth box start|stop|status|run` (and `init`, PID 1 inside the box).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use hearth_box::host::BoxStatus;
use hearth_box::{BoxDir, StartOptions};
use hearth_image::{refs, tools};
use hearth_proto::control::ExecSpec;

use crate::cmd::image::ensure_artifacts;
use crate::paths::Paths;

#[derive(Subcommand)]
pub(crate) enum BoxCmd {
    /// Boot the box (building missing artifacts first) and wait until it answers.
    Start(StartArgs),
    /// Shut the box down cleanly (its data disk is synced and unmounted).
    Stop,
    /// Is the box running, and does it answer?
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Run a command inside the box and return its output and exit status. Starts the box
    /// for the command (and stops it after) if it is not running.
    Run(RunArgs),
    /// PID 1 inside the box (started by the box image's /init).
    #[command(hide = true)]
    Init,
}

#[derive(Args, Clone)]
pub(crate) struct StartArgs {
    /// vCPUs of the box [default: the host's core count].
    #[arg(long)]
    cpus: Option<u32>,
    /// Memory of the box in MiB [default: half the host's memory, at most 8192].
    #[arg(long)]
    mem_mib: Option<u64>,
    /// Size of the box's persistent data disk when it is first created (sparse).
    #[arg(long, default_value_t = 64)]
    data_disk_gib: u64,
    /// Let the box reach the network beyond this host (default: no egress, restrict=on).
    #[arg(long)]
    pub(crate) egress: bool,
    /// Seconds to wait for the box to answer.
    #[arg(long, default_value_t = 180)]
    timeout: u64,
}

#[derive(Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    start: StartArgs,
    /// Kill the command after this many seconds.
    #[arg(long)]
    cmd_timeout: Option<u64>,
    /// Extra environment, KEY=VALUE (repeatable).
    #[arg(long = "env", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Working directory inside the box.
    #[arg(long)]
    cwd: Option<String>,
    /// Give up on a box that does not answer for this many seconds (a wedged box: its QEMU
    /// alive, its CPUs halted for good); the error then says the box died.
    #[arg(long, default_value_t = WEDGED_AFTER.as_secs(), value_parser = clap::value_parser!(u64).range(5..))]
    wedged_after: u64,
    /// The command is a host binary: share it into the box first (e.g. a test binary).
    #[arg(long)]
    host_bin: bool,
    /// The command and its arguments (after --).
    #[arg(last = true, required = true)]
    argv: Vec<String>,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("`{s}` is not KEY=VALUE"))
}

pub(crate) fn run(cmd: BoxCmd, paths: &Paths) -> anyhow::Result<ExitCode> {
    let dir = BoxDir::new(paths.box_dir());
    match cmd {
        BoxCmd::Start(a) => {
            let state = start(paths, &dir, &a, true, &[], false)?;
            println!("box ready in {:.1} s (pid {}, control port 127.0.0.1:{})", state.ready_ms as f64 / 1000.0, state.pid, state.port);
            Ok(ExitCode::SUCCESS)
        }
        BoxCmd::Stop => {
            if dir.stop(Duration::from_secs(30))? {
                println!("box stopped");
            } else {
                println!("box was not running");
            }
            Ok(ExitCode::SUCCESS)
        }
        BoxCmd::Status { json } => status(&dir, json),
        BoxCmd::Run(a) => run_in_box(paths, &dir, a),
        BoxCmd::Init => hearth_box::inside::init::run(),
    }
}

/// Starts the box. `owned`: the box lives only as long as this command, which from the
/// moment QEMU is started (the artifacts built: a build stays interruptible) stops it on
/// SIGINT, SIGTERM or SIGHUP ([`stop_on_signals`]).
pub(crate) fn start(paths: &Paths, dir: &BoxDir, a: &StartArgs, rebuild: bool, forwards: &[(u16, u16)], owned: bool) -> anyhow::Result<hearth_box::host::BoxState> {
    let cache = ensure_artifacts(paths, rebuild)?;
    if owned {
        stop_on_signals()?;
    }
    let opts = StartOptions {
        qemu: tools::require("qemu-system-x86_64")?,
        mkfs: tools::require("mkfs.ext4")?,
        kernel: cache.resolve_file(refs::BOX_KERNEL, "vmlinux")?,
        rootfs: cache.resolve_file(refs::BOX_ROOTFS, "rootfs.ext4")?,
        cache_dir: cache.root().to_path_buf(),
        hearth_bin: std::env::current_exe().context("locating this executable")?,
        cpus: a.cpus.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(2)),
        mem_mib: a.mem_mib.unwrap_or_else(default_box_mem_mib),
        data_disk_gib: a.data_disk_gib,
        egress: a.egress,
        forwards: forwards.to_vec(),
        ready_timeout: Duration::from_secs(a.timeout),
    };
    eprintln!("hearth: starting the box ({} vCPUs, {} MiB; console: {})", opts.cpus, opts.mem_mib, dir.console_log().display());
    Ok(dir.start(&opts)?)
}

/// Half the host's memory, at most 8 GiB, at least 1 GiB.
fn default_box_mem_mib() -> u64 {
    let total_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find(|l| l.starts_with("MemTotal:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()))
        .unwrap_or(4 << 20);
    (total_kib / 1024 / 2).clamp(1024, 8192)
}

fn status(dir: &BoxDir, json: bool) -> anyhow::Result<ExitCode> {
    let st = dir.status();
    if json {
        let v = match &st {
            BoxStatus::Stopped => serde_json::json!({"state": "stopped"}),
            BoxStatus::Running { state, uptime_ms } => serde_json::json!({"state": "running", "box": state, "uptime_ms": uptime_ms}),
            BoxStatus::Unresponsive { state, error } => serde_json::json!({"state": "unresponsive", "box": state, "error": error}),
        };
        println!("{v}");
    } else {
        match &st {
            BoxStatus::Stopped => println!("stopped"),
            BoxStatus::Running { state, uptime_ms } => println!(
                "running: pid {}, control port 127.0.0.1:{}, {} vCPUs, {} MiB, up {:.0} s, became ready in {:.1} s",
                state.pid,
                state.port,
                state.cpus,
                state.mem_mib,
                *uptime_ms as f64 / 1000.0,
                state.ready_ms as f64 / 1000.0
            ),
            BoxStatus::Unresponsive { state, error } => println!("unresponsive: pid {} is alive but does not answer: {error}", state.pid),
        }
    }
    Ok(match st {
        BoxStatus::Running { .. } => ExitCode::SUCCESS,
        _ => ExitCode::from(3),
    })
}

/// How a box-died error begins (see [`exec_watched`]); tests match on it to run again.
pub(crate) const BOX_DIED: &str = "the box died while the command ran";

/// What `box run` says when `--cmd-timeout` killed the command (the box tests look for it).
const TIMED_OUT: &str = "the command timed out in the box and was killed";

/// The longest between two probes of whether a running command's box still answers.
const PROBE_EVERY: Duration = Duration::from_secs(20);
/// By default, a box that answered no probe for this long is wedged. Seen under TCG: every
/// CPU of the box halted for good, QEMU alive and quiet, the console silent; the box's clock
/// stops with it, so nothing inside it times out either, and without this the caller would
/// wait forever.
pub(crate) const WEDGED_AFTER: Duration = Duration::from_secs(120);

/// Asks the box every `every` whether its control server answers, and sends each probe's
/// result (the instant of the answer, or None); ends when the receiver goes away.
fn probe_answers(dir: BoxDir, every: Duration) -> std::sync::mpsc::Receiver<Option<std::time::Instant>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || loop {
        std::thread::sleep(every);
        let answered = matches!(dir.status(), BoxStatus::Running { .. }).then(std::time::Instant::now);
        if tx.send(answered).is_err() {
            return;
        }
    });
    rx
}

/// Runs `spec` in the box, its stdout to `stdout` and stderr to ours, while watching the box's
/// console: a box whose kernel crashed keeps its TCP port open and says nothing, forever, so
/// waiting on it alone could hang. `stdin`, when given, is streamed to the command. Returns
/// None, leaving the command running, once `stop` is set.
///
/// A box that died under the command (kernel crash, QEMU gone, no answer for `wedged_after`)
/// is an error that begins with [`BOX_DIED`], so callers that may run the command again in a
/// fresh box can tell it from the command's own failure.
pub(crate) fn exec_watched(
    dir: &BoxDir,
    spec: ExecSpec,
    stdin: Option<Box<dyn std::io::Read + Send>>,
    mut stdout: Box<dyn std::io::Write + Send>,
    stop: &std::sync::atomic::AtomicBool,
    wedged_after: Duration,
) -> anyhow::Result<Option<hearth_exec::ExecExit>> {
    let console_from = dir.console_len();
    let client = dir.client()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(client.exec_io(spec, stdin, &mut stdout, &mut std::io::stderr()));
    });
    // A few probes fit in the allowed silence, so one slow answer is not death.
    let answers = probe_answers(BoxDir::new(dir.root()), (wedged_after / 4).min(PROBE_EVERY));
    let mut last_answer = std::time::Instant::now();
    loop {
        last_answer = answers.try_iter().flatten().last().unwrap_or(last_answer);
        if last_answer.elapsed() > wedged_after {
            // The registers first: the NMI that asks the kernel for its stacks ends the box.
            let (console, registers) = (dir.console_since(console_from), dir.cpu_report());
            bail!(
                "{BOX_DIED}: it stopped answering (its control server silent for {} s, its QEMU alive: a wedged box); console since the command started:\n{console}\nQEMU's monitor on the box's CPUs:\n{}\nThe box's kernel on its CPUs, stopped by an NMI:\n{}",
                last_answer.elapsed().as_secs(),
                registers.unwrap_or_else(|| "(no answer)".into()),
                dir.nmi_backtraces().unwrap_or_else(|| "(nothing)".into())
            );
        }
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(Ok(exit)) => return Ok(Some(exit)),
            Ok(Err(e)) => {
                // A connection cut under the command is most often the box going away.
                if let Some(why) = dir.death_since(console_from) {
                    bail!("{BOX_DIED}: {why}\n(the command's connection: {e})");
                }
                // The box lives on but the command's connection broke: the console may say why.
                bail!("{e}\nthe box's console since the command started:\n{}", dir.console_since(console_from));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Some(why) = dir.death_since(console_from) {
                    bail!("{BOX_DIED}: {why}");
                }
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    return Ok(None);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => bail!("lost the command's thread"),
        }
    }
}

/// Set by SIGINT, SIGTERM or SIGHUP once [`stop_on_signals`] is called.
pub(crate) static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_signal(_: nix::libc::c_int) {
    STOP.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// From now on SIGINT, SIGTERM and SIGHUP set [`STOP`] instead of ending the process, so a box
/// this process started is stopped on the way out, not left running with nobody to stop it.
pub(crate) fn stop_on_signals() -> anyhow::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        let action = SigAction::new(SigHandler::Handler(on_signal), SaFlags::empty(), SigSet::empty());
        // SAFETY: the handler only stores to an atomic.
        unsafe { sigaction(sig, &action) }.context("installing signal handlers")?;
    }
    Ok(())
}

fn run_in_box(paths: &Paths, dir: &BoxDir, a: RunArgs) -> anyhow::Result<ExitCode> {
    let ephemeral = dir.running().is_none();
    if ephemeral {
        start(paths, dir, &a.start, false, &[], true)?;
    }
    let result = (|| -> anyhow::Result<_> {
        let mut argv = a.argv;
        if a.host_bin {
            argv[0] = dir.share_binary(std::path::Path::new(&argv[0]))?;
        }
        if STOP.load(std::sync::atomic::Ordering::SeqCst) {
            bail!("interrupted while the box started (it is stopped)");
        }
        let spec = ExecSpec { env: a.env, cwd: a.cwd, timeout_secs: a.cmd_timeout, ..ExecSpec::new(argv) };
        let exit = exec_watched(dir, spec, None, Box::new(std::io::stdout()), &STOP, Duration::from_secs(a.wedged_after))?;
        exit.ok_or_else(|| anyhow::anyhow!("interrupted (the box is stopped, and the command with it)"))
    })();
    if ephemeral {
        dir.stop(Duration::from_secs(30)).context("stopping the box after the command")?;
    }
    let exit = result?;
    if exit.timed_out {
        bail!("{TIMED_OUT}");
    }
    Ok(ExitCode::from(exit.status().clamp(0, 255) as u8))
}
