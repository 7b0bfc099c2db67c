//! Running the bridge: one child process at a time, its output logged line by line, started
//! again after it dies (with a backoff that grows while it keeps dying and resets once it
//! ran a while), stopped with SIGTERM and then SIGKILL, always reaped.
//!
//! Thread-based, not async: `hearth serve` runs it both beside its async server and, when
//! serving from the box, on the host, which runs no async runtime.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::{python_env, BridgeError, SCRIPT};

/// Waits between restarts: the first, and the longest.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A bridge that ran this long before it died is restarted after [`BACKOFF_FIRST`] again.
const RAN_WELL: Duration = Duration::from_secs(60);
/// After SIGTERM, how long the bridge has to end before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How often the supervisor looks at its child and at the stop flag.
const TICK: Duration = Duration::from_millis(100);

/// What the bridge needs to run.
#[derive(Clone)]
pub struct BridgeSpec {
    /// A Python with `hypha-rpc`; none: the cached venv (see [`python_env`]).
    pub python: Option<PathBuf>,
    pub cache_dir: PathBuf,
    /// Where the program is written (the server's data directory).
    pub run_dir: PathBuf,
    /// hearth's API, as the bridge reaches it (loopback).
    pub hearth_url: String,
    /// The key it acts for its callers with (`Service::bridge_key`).
    pub key: String,
    pub server_url: String,
    /// The Hypha token it connects with.
    pub token: String,
    /// The Hypha workspace to register in (empty: the token's own).
    pub workspace: String,
    pub service_id: String,
    pub visibility: String,
}

// Never print the key or the token.
impl std::fmt::Debug for BridgeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeSpec").field("server_url", &self.server_url).field("service_id", &self.service_id).field("hearth_url", &self.hearth_url).finish_non_exhaustive()
    }
}

/// The running bridge; [`Bridge::stop`] ends it (dropping it does too).
pub struct Bridge {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Bridge {
    /// Starts supervising the bridge (the Python environment is made on the supervisor's
    /// thread, so the server does not wait for it).
    pub fn start(spec: BridgeSpec) -> Bridge {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new().name("hypha-bridge".into()).spawn(move || supervise(&spec, &flag)).expect("spawning a thread");
        Bridge { stop, thread: Some(thread) }
    }

    /// Stops the bridge and waits until its process is reaped.
    pub fn stop(mut self) {
        self.end();
    }

    fn end(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.end();
    }
}

/// Sleeps `d` unless asked to stop meanwhile: whether to go on.
fn nap(d: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep(TICK.min(until.saturating_duration_since(Instant::now())));
    }
    !stop.load(Ordering::SeqCst)
}

fn supervise(spec: &BridgeSpec, stop: &AtomicBool) {
    let mut backoff = BACKOFF_FIRST;
    let next_backoff = |b: Duration| (b * 2).min(BACKOFF_MAX);
    let python = loop {
        match python_env(&spec.cache_dir, spec.python.as_deref()) {
            Ok(p) => break p,
            Err(e) => tracing::error!("the Hypha bridge cannot start: {e}; trying again in {backoff:?}"),
        }
        if !nap(backoff, stop) {
            return;
        }
        backoff = next_backoff(backoff);
    };
    let script = spec.run_dir.join("hypha-bridge.py");
    if let Err(e) = hearth_fs::write_atomic(&script, SCRIPT.as_bytes()) {
        tracing::error!("the Hypha bridge cannot start: writing {}: {e}", script.display());
        return;
    }
    backoff = BACKOFF_FIRST;
    while !stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        match run_once(spec, &python, &script, stop) {
            Ok(None) => return,
            Ok(Some(status)) => tracing::warn!("the Hypha bridge ended ({status}); starting it again in {backoff:?}"),
            Err(e) => tracing::error!("the Hypha bridge: {e}; starting it again in {backoff:?}"),
        }
        if started.elapsed() >= RAN_WELL {
            backoff = BACKOFF_FIRST;
        }
        if !nap(backoff, stop) {
            return;
        }
        backoff = next_backoff(backoff);
    }
}

/// Runs the bridge until it ends (its status) or `stop` is set (None, once it is reaped).
fn run_once(spec: &BridgeSpec, python: &PathBuf, script: &PathBuf, stop: &AtomicBool) -> Result<Option<std::process::ExitStatus>, BridgeError> {
    let mut child = Command::new(python)
        .arg("-u")
        .arg(script)
        .env("HEARTH_URL", &spec.hearth_url)
        .env("HEARTH_BRIDGE_KEY", &spec.key)
        .env("HYPHA_SERVER_URL", &spec.server_url)
        .env("HYPHA_TOKEN", &spec.token)
        .env("HYPHA_WORKSPACE", &spec.workspace)
        .env("HEARTH_SERVICE_ID", &spec.service_id)
        .env("HEARTH_SERVICE_VISIBILITY", &spec.visibility)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| BridgeError::Io { what: format!("starting {}", python.display()), source: e })?;
    let logs = [log_lines(child.stdout.take()), log_lines(child.stderr.take())];
    tracing::info!(pid = child.id(), "the Hypha bridge started for {}", spec.server_url);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if stop.load(Ordering::SeqCst) => {
                end(&mut child);
                break None;
            }
            Ok(None) => std::thread::sleep(TICK),
            Err(e) => {
                end(&mut child);
                return Err(BridgeError::Io { what: "waiting for the Hypha bridge".into(), source: e });
            }
        }
    };
    for t in logs.into_iter().flatten() {
        let _ = t.join();
    }
    Ok(status)
}

/// SIGTERM, then SIGKILL after [`STOP_GRACE`]; reaped either way.
fn end(child: &mut Child) {
    let pid = Pid::from_raw(child.id() as i32);
    let _ = kill(pid, Signal::SIGTERM);
    let until = Instant::now() + STOP_GRACE;
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(TICK);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Logs what the bridge prints, a line at a time, until it closes the pipe.
fn log_lines(pipe: Option<impl std::io::Read + Send + 'static>) -> Option<JoinHandle<()>> {
    let pipe = pipe?;
    std::thread::Builder::new()
        .name("hypha-bridge-log".into())
        .spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                tracing::info!(target: "hypha_bridge", "{line}");
            }
        })
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for Python: a shell script that notes each start (its pid) in `starts`,
    /// then runs `then`.
    fn fake_python(dir: &std::path::Path, then: &str) -> BridgeSpec {
        let python = dir.join("python");
        let starts = dir.join("starts");
        std::fs::write(&python, format!("#!/bin/sh\necho $$ >> {}\n{then}\n", starts.display())).unwrap();
        std::fs::set_permissions(&python, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        BridgeSpec {
            python: Some(python),
            cache_dir: dir.into(),
            run_dir: dir.into(),
            hearth_url: "http://127.0.0.1:9".into(),
            key: "k".into(),
            server_url: "http://127.0.0.1:9".into(),
            token: "t".into(),
            workspace: String::new(),
            service_id: "s".into(),
            visibility: "public".into(),
        }
    }

    fn starts(dir: &std::path::Path) -> Vec<i32> {
        std::fs::read_to_string(dir.join("starts")).unwrap_or_default().lines().map(|l| l.parse().unwrap()).collect()
    }

    fn alive(pid: i32) -> bool {
        kill(Pid::from_raw(pid), None).is_ok()
    }

    #[test]
    fn a_bridge_that_dies_is_started_again_and_stopping_ends_the_running_one() {
        let dir = tempfile::tempdir().unwrap();
        let bridge = Bridge::start(fake_python(dir.path(), "exit 3"));
        while starts(dir.path()).len() < 2 {
            std::thread::sleep(TICK);
        }
        bridge.stop();
        let seen = starts(dir.path()).len();
        std::thread::sleep(BACKOFF_FIRST * 2);
        assert_eq!(starts(dir.path()).len(), seen, "nothing is started after stop");
        assert!(dir.path().join("hypha-bridge.py").is_file(), "the program was written for it");
    }

    #[test]
    fn stopping_ends_and_reaps_a_bridge_that_runs() {
        let dir = tempfile::tempdir().unwrap();
        // Ignores SIGTERM: it is killed after the grace period.
        let bridge = Bridge::start(fake_python(dir.path(), "trap '' TERM; while :; do sleep 0.1; done"));
        let pid = loop {
            if let Some(&p) = starts(dir.path()).first() {
                break p;
            }
            std::thread::sleep(TICK);
        };
        assert!(alive(pid));
        bridge.stop();
        assert!(!alive(pid), "the bridge is gone and reaped once stop returns");
        assert_eq!(starts(dir.path()).len(), 1);
    }
}
