//! The host side of the box: its directory, starting and stopping QEMU, status.
//!
//! Layout of the box directory (`<data-dir>/box/`):
//! ```text
//! state.json      pid and forwarded port of the running box (absent when stopped)
//! data.ext4       the box's persistent data disk (sparse; workstations live here)
//! share/bin/hearth   this hearth binary, shared read-only into the box over 9p
//! share/token     the control channel secret (new at every start, mode 0600)
//! console.log     the box's serial console; qemu.log: QEMU's own output
//! monitor.sock    QEMU's human monitor (mode 0600), for post-mortems of a wedged box
//! .lock           held while starting or stopping
//! ```
//! QEMU runs detached (own session), so the box outlives the command that started it.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hearth_fs::DirLock;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::client::{self, BoxClient};
use crate::qemu::{self, BoxSpec};
use crate::BoxError;

/// What is recorded about a running box.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BoxState {
    pub pid: u32,
    pub port: u16,
    pub started_at: u64,
    /// QEMU spawned → control server answered.
    pub ready_ms: u64,
    pub cpus: u32,
    pub mem_mib: u64,
    pub egress: bool,
    /// Host loopback ports forwarded into the box: (host, box).
    #[serde(default)]
    pub forwards: Vec<(u16, u16)>,
}

#[derive(Debug, Clone)]
pub struct StartOptions {
    pub qemu: PathBuf,
    pub mkfs: PathBuf,
    pub kernel: PathBuf,
    pub rootfs: PathBuf,
    pub cache_dir: PathBuf,
    /// The hearth binary to run inside (normally this very executable).
    pub hearth_bin: PathBuf,
    pub cpus: u32,
    pub mem_mib: u64,
    pub data_disk_gib: u64,
    pub egress: bool,
    /// Host loopback ports forwarded into the box: (host, box).
    pub forwards: Vec<(u16, u16)>,
    pub ready_timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum BoxStatus {
    Stopped,
    Running {
        state: BoxState,
        uptime_ms: u64,
    },
    /// QEMU is alive but the control server does not answer.
    Unresponsive {
        state: BoxState,
        error: String,
    },
}

pub struct BoxDir {
    root: PathBuf,
}

const CONSOLE_TAIL_BYTES: u64 = 4096;

/// How long the box's kernel gets to print its CPUs' stacks after an NMI (at the serial
/// console's speed under emulation: a few KiB take well under a second), and how much of it
/// is kept.
const NMI_REPORT_WAIT: Duration = Duration::from_secs(20);
const NMI_REPORT_BYTES: u64 = 24 << 10;

/// What the box's kernel prints when it is going down (guests' consoles are elsewhere), or
/// wedged: a vCPU whose timer interrupts stopped (seen under TCG with nested guests running:
/// the box then answers nothing for good; `-accel tcg,thread=single` was tried against it and
/// booted no guest in two minutes).
pub const KERNEL_CRASH_MARKERS: &[&str] =
    &["Kernel panic", "PANIC: double fault", "BUG: kernel NULL pointer", "BUG: unable to handle", "Oops:", "kthread timer wakeup didn't happen"];

impl BoxDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn console_log(&self) -> PathBuf {
        self.root.join("console.log")
    }

    fn state_path(&self) -> PathBuf {
        self.root.join("state.json")
    }

    fn share(&self) -> PathBuf {
        self.root.join("share")
    }

    /// Held while starting or stopping.
    fn lock(&self) -> Result<DirLock, BoxError> {
        DirLock::acquire(&self.root).map_err(|e| BoxError::io("locking the box directory", e))
    }

    /// The console's length now: where [`BoxDir::kernel_crash_since`] starts looking.
    pub fn console_len(&self) -> u64 {
        fs::metadata(self.console_log()).map(|m| m.len()).unwrap_or(0)
    }

    /// The console's tail if the box's kernel crashed (panic, oops, double fault) after
    /// `offset`: a box in that state never answers again, so callers stop waiting on it.
    pub fn kernel_crash_since(&self, offset: u64) -> Option<String> {
        let mut f = fs::File::open(self.console_log()).ok()?;
        f.seek(SeekFrom::Start(offset)).ok()?;
        let mut buf = Vec::new();
        f.take(1 << 20).read_to_end(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf);
        let at = KERNEL_CRASH_MARKERS.iter().filter_map(|m| text.find(m)).min()?;
        let start = text.floor_char_boundary(at);
        Some(text[start..text.ceil_char_boundary((start + 3000).min(text.len()))].to_string())
    }

    fn monitor_path(&self) -> PathBuf {
        self.root.join("monitor.sock")
    }

    /// What QEMU's monitor says of the box's CPUs (halted or not, where, with which flags):
    /// the post-mortem of a box that stopped answering. None if the monitor does not answer
    /// within a few seconds (a QEMU that is itself stuck, or stopped).
    pub fn cpu_report(&self) -> Option<String> {
        self.monitor(&["info cpus", "info registers -a"])
    }

    /// Where the box's kernel is on each CPU, in its own words: an NMI sent to every CPU
    /// through QEMU's monitor ends the box (its kernel runs with `unknown_nmi_panic`, see
    /// [`qemu::KERNEL_ARGS`]), and its panic prints the stack of the CPU that took it, then
    /// of the others, symbolized, on the console; then it reboots, which ends QEMU. For a box
    /// that stopped answering, where the registers alone name a spinning function but not who
    /// called it or why; it ends the box, so only for one that is lost anyway. None if the
    /// monitor does not answer, or the console says nothing within [`NMI_REPORT_WAIT`].
    pub fn nmi_backtraces(&self) -> Option<String> {
        let qemu = self.recorded()?.pid;
        let from = self.console_len();
        self.monitor(&["nmi"])?;
        let deadline = Instant::now() + NMI_REPORT_WAIT;
        while Instant::now() < deadline && is_qemu_alive(qemu) {
            std::thread::sleep(Duration::from_millis(200));
        }
        let said = bounded_from(&self.console_log(), from, NMI_REPORT_BYTES)?;
        (!said.trim().is_empty()).then_some(said)
    }

    /// Sends `commands` to QEMU's human monitor; what it answered, without its echo of them.
    fn monitor(&self, commands: &[&str]) -> Option<String> {
        use std::io::Write;
        let mut m = std::os::unix::net::UnixStream::connect(self.monitor_path()).ok()?;
        m.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        m.write_all(commands.iter().map(|c| format!("{c}\n")).collect::<String>().as_bytes()).ok()?;
        // The banner's prompt, then one per command: the last is the end of the answers.
        let (mut out, mut buf) = (Vec::new(), [0u8; 4096]);
        while out.windows(7).filter(|w| w == b"(qemu) ").count() <= commands.len() && out.len() < 64 << 10 {
            match m.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        // The monitor echoes what it is sent with line-editing escapes: those lines go.
        let out = String::from_utf8_lossy(&out);
        let text: Vec<&str> = out.lines().map(|l| l.trim_end_matches('\r')).filter(|l| !l.contains('\x1b')).collect();
        let text = text.join("\n");
        (!text.trim().is_empty()).then_some(text)
    }

    /// The console from `offset` on, its last few KiB at most (for error messages).
    pub fn console_since(&self, offset: u64) -> String {
        tail_from(&self.console_log(), offset).unwrap_or_default()
    }

    /// Why the box is gone, if it is: its kernel crashed after `offset` (the box then never
    /// answers again), or its QEMU exited (a triple fault ends QEMU under `-no-reboot`
    /// without a word on the console). Either way what runs in it is lost, through no fault of
    /// its own: callers say so, with the console's and QEMU's last words.
    pub fn death_since(&self, offset: u64) -> Option<String> {
        if let Some(tail) = self.kernel_crash_since(offset) {
            return Some(format!("its kernel crashed or a CPU stalled for good; console:\n{tail}"));
        }
        let state = self.recorded()?;
        (!is_qemu_alive(state.pid))
            .then(|| format!("its QEMU (pid {}) exited; qemu.log:\n{}\nconsole:\n{}", state.pid, read_tail(&self.root.join("qemu.log")), read_tail(&self.console_log())))
    }

    /// The state last recorded, whether or not its QEMU still runs.
    fn recorded(&self) -> Option<BoxState> {
        serde_json::from_slice(&fs::read(self.state_path()).ok()?).ok()
    }

    /// The recorded state, if its QEMU is still alive.
    pub fn running(&self) -> Option<BoxState> {
        self.recorded().filter(|s| is_qemu_alive(s.pid))
    }

    pub fn token(&self) -> Result<String, BoxError> {
        fs::read_to_string(self.share().join("token")).map(|t| t.trim().to_string()).map_err(|e| BoxError::io("reading the box token", e))
    }

    /// An authenticated connection to the running box.
    pub fn client(&self) -> Result<BoxClient, BoxError> {
        let state = self.running().ok_or(BoxError::NotRunning)?;
        client::connect(state.port, &self.token()?, Duration::from_secs(10))
    }

    pub fn status(&self) -> BoxStatus {
        let Some(state) = self.running() else { return BoxStatus::Stopped };
        match self.token().and_then(|t| client::connect(state.port, &t, Duration::from_secs(5))) {
            Ok(c) => BoxStatus::Running { uptime_ms: c.uptime_ms, state },
            Err(e) => BoxStatus::Unresponsive { state, error: e.to_string() },
        }
    }

    /// Boots the box and returns once its control server answers.
    pub fn start(&self, opts: &StartOptions) -> Result<BoxState, BoxError> {
        let _lock = self.lock()?;
        if let Some(s) = self.running() {
            return Err(BoxError::AlreadyRunning(s.pid));
        }
        let _ = fs::remove_file(self.state_path());
        for p in [&opts.kernel, &opts.rootfs] {
            if !p.is_file() {
                return Err(BoxError::MissingArtifact(p.display().to_string()));
            }
        }
        let data_disk = self.root.join("data.ext4");
        if !data_disk.exists() {
            hearth_fs::create_ext4_image(&data_disk, opts.data_disk_gib << 30, "hearth-data", &opts.mkfs).map_err(|e| BoxError::io("creating the box data disk", e))?;
        }
        let token = self.prepare_share(&opts.hearth_bin)?;
        let port = free_port()?;
        let spec = BoxSpec {
            kernel: opts.kernel.clone(),
            rootfs: opts.rootfs.clone(),
            data_disk,
            share_dir: self.share(),
            cache_dir: opts.cache_dir.clone(),
            console_log: self.console_log(),
            pid_file: self.root.join("qemu.pid"),
            cpus: opts.cpus,
            mem_mib: opts.mem_mib,
            control_port: port,
            forwards: opts.forwards.clone(),
            egress: opts.egress,
            // A unix socket path has at most 107 bytes; a deeper data directory goes without.
            monitor: Some(self.monitor_path()).filter(|p| p.as_os_str().len() < 100),
        };
        let _ = fs::remove_file(self.monitor_path());
        let qemu_log_path = self.root.join("qemu.log");
        let qemu_log = fs::File::create(&qemu_log_path).map_err(|e| BoxError::io("creating qemu.log", e))?;
        let qemu_err = qemu_log.try_clone().map_err(|e| BoxError::io("cloning qemu.log", e))?;
        let started = Instant::now();
        let mut cmd = Command::new(&opts.qemu);
        cmd.args(qemu::args(&spec)).stdin(Stdio::null()).stdout(qemu_log).stderr(qemu_err);
        // SAFETY: setsid is async-signal-safe; it detaches QEMU from our session and
        // terminal so the box outlives this command and ^C here does not reach it.
        unsafe {
            cmd.pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(std::io::Error::from));
        }
        let child = cmd.spawn().map_err(|e| BoxError::io(format!("starting {}", opts.qemu.display()), e))?;
        let pid = child.id();
        let state = BoxState {
            pid,
            port,
            started_at: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            ready_ms: 0,
            cpus: opts.cpus,
            mem_mib: opts.mem_mib,
            egress: opts.egress,
            forwards: opts.forwards.clone(),
        };
        self.write_state(&state)?;
        let deadline = started + opts.ready_timeout;
        loop {
            if !is_qemu_alive(pid) {
                let _ = fs::remove_file(self.state_path());
                return Err(BoxError::QemuExited { qemu_log: read_tail(&qemu_log_path), tail: read_tail(&self.console_log()) });
            }
            if client::connect(port, &token, Duration::from_secs(2)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                hearth_init::proc::reap(pid);
                let _ = fs::remove_file(self.state_path());
                return Err(BoxError::NotReady { secs: opts.ready_timeout.as_secs(), tail: read_tail(&self.console_log()) });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // The monitor controls the box: only its owner may connect.
        let _ = fs::set_permissions(self.monitor_path(), fs::Permissions::from_mode(0o600));
        let state = BoxState { ready_ms: started.elapsed().as_millis() as u64, ..state };
        self.write_state(&state)?;
        Ok(state)
    }

    /// Shuts the box down cleanly (the box syncs and unmounts its data disk), falling back to
    /// SIGTERM and SIGKILL. Returns false if it was not running.
    pub fn stop(&self, timeout: Duration) -> Result<bool, BoxError> {
        let _lock = self.lock()?;
        let Some(state) = self.running() else {
            let _ = fs::remove_file(self.state_path());
            return Ok(false);
        };
        let clean = self.token().and_then(|t| client::connect(state.port, &t, Duration::from_secs(5))).and_then(|c| Ok(c.shutdown()?));
        let pid = Pid::from_raw(state.pid as i32);
        if clean.is_err() || !wait_exit(state.pid, timeout) {
            let _ = kill(pid, Signal::SIGTERM);
            if !wait_exit(state.pid, Duration::from_secs(5)) {
                let _ = kill(pid, Signal::SIGKILL);
                wait_exit(state.pid, Duration::from_secs(5));
            }
        }
        fs::remove_file(self.state_path()).map_err(|e| BoxError::io("removing state.json", e))?;
        Ok(true)
    }

    fn write_state(&self, state: &BoxState) -> Result<(), BoxError> {
        hearth_fs::write_atomic(&self.state_path(), &serde_json::to_vec_pretty(state).expect("state serializes")).map_err(|e| BoxError::io("recording the box state", e))
    }

    /// Copies the hearth binary into the share and writes a fresh token; returns the token.
    fn prepare_share(&self, hearth_bin: &Path) -> Result<String, BoxError> {
        // Binaries shared for an earlier box (`share_binary`) go with it.
        let bin_dir = self.share().join("bin");
        if bin_dir.exists() {
            fs::remove_dir_all(&bin_dir).map_err(|e| BoxError::io("clearing the box share", e))?;
        }
        fs::create_dir_all(&bin_dir).map_err(|e| BoxError::io("creating the box share", e))?;
        copy_executable(hearth_bin, &bin_dir.join("hearth"))?;
        let mut raw = [0u8; 32];
        fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut raw)).map_err(|e| BoxError::io("reading /dev/urandom", e))?;
        let token = hex::encode(raw);
        let token_path = self.share().join("token");
        let _ = fs::remove_file(&token_path);
        let mut f = fs::OpenOptions::new().create_new(true).write(true).mode(0o600).open(&token_path).map_err(|e| BoxError::io("writing the box token", e))?;
        std::io::Write::write_all(&mut f, token.as_bytes()).map_err(|e| BoxError::io("writing the box token", e))?;
        Ok(token)
    }
}

impl BoxDir {
    /// Makes a host binary runnable in the running box: copies it into the share under a
    /// name unique to its contents and returns its path inside the box. A file already in
    /// the share is never rewritten (the box may be running it).
    pub fn share_binary(&self, host_path: &Path) -> Result<String, BoxError> {
        let data = fs::read(host_path).map_err(|e| BoxError::io(format!("reading {}", host_path.display()), e))?;
        let name = host_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "bin".into());
        let digest = hex::encode(&sha256(&data)[..6]);
        let file = format!("{name}-{digest}");
        let dest = self.share().join("bin").join(&file);
        if !dest.exists() {
            copy_executable(host_path, &dest)?;
        }
        Ok(format!("{}/bin/{file}", crate::SHARE_MOUNT))
    }
}

impl BoxDir {
    /// Puts `data` into the share under a content-hashed name (a file the box may be reading
    /// is never replaced) and returns its path inside the box.
    pub fn share_file(&self, name: &str, data: &[u8]) -> Result<String, BoxError> {
        let file = format!("{name}-{}", hex::encode(&sha256(data)[..6]));
        let dest = self.share().join("files").join(&file);
        if !dest.exists() {
            fs::create_dir_all(dest.parent().expect("has a parent")).map_err(|e| BoxError::io("creating the share's files/", e))?;
            hearth_fs::write_atomic(&dest, data).map_err(|e| BoxError::io(format!("writing {}", dest.display()), e))?;
        }
        Ok(format!("{}/files/{file}", crate::SHARE_MOUNT))
    }
}

/// Copies to a temporary name, makes it executable, renames into place.
fn copy_executable(from: &Path, to: &Path) -> Result<(), BoxError> {
    let tmp = to.with_extension("tmp");
    fs::copy(from, &tmp).map_err(|e| BoxError::io(format!("copying {}", from.display()), e))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).map_err(|e| BoxError::io("chmod", e))?;
    fs::rename(&tmp, to).map_err(|e| BoxError::io(format!("placing {}", to.display()), e))
}

fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

fn free_port() -> Result<u16, BoxError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| BoxError::io("finding a free port", e))?;
    l.local_addr().map(|a| a.port()).map_err(|e| BoxError::io("finding a free port", e))
}

/// Alive and still a QEMU (a recycled pid is not our box).
fn is_qemu_alive(pid: u32) -> bool {
    hearth_init::proc::is_alive(pid, "qemu-system")
}

fn wait_exit(pid: u32, timeout: Duration) -> bool {
    hearth_init::proc::wait_gone(pid, "qemu-system", timeout)
}

/// The last few KiB of a log, for error messages.
pub fn read_tail(path: &Path) -> String {
    tail_from(path, 0).unwrap_or_else(|| format!("({} missing)", path.display()))
}

/// What a log holds from `offset` on, its last [`CONSOLE_TAIL_BYTES`] at most; None if it
/// cannot be opened.
fn tail_from(path: &Path, offset: u64) -> Option<String> {
    let len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    bounded_from(path, offset.max(len.saturating_sub(CONSOLE_TAIL_BYTES)), CONSOLE_TAIL_BYTES)
}

/// At most `limit` bytes of `path` from `offset` on.
fn bounded_from(path: &Path, offset: u64, limit: u64) -> Option<String> {
    let mut f = fs::File::open(path).ok()?;
    f.seek(SeekFrom::Start(offset)).ok()?;
    let mut buf = Vec::new();
    let _ = f.take(limit).read_to_end(&mut buf);
    Some(String::from_utf8_lossy(&buf).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_monitor_report_keeps_answers_and_drops_echoed_commands() {
        use std::io::Write;
        let d = tempfile::tempdir().unwrap();
        let b = BoxDir::new(d.path());
        assert_eq!(b.cpu_report(), None, "no monitor, no report");
        let l = std::os::unix::net::UnixListener::bind(b.monitor_path()).unwrap();
        // What QEMU 7.2's monitor sends back (its line editor echoes each command).
        std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            c.write_all(b"QEMU 7.2.22 monitor - type 'help' for more information\r\n(qemu) ").unwrap();
            let mut buf = [0u8; 64];
            let _ = c.read(&mut buf);
            c.write_all(b"i\x1b[K\x1b[Dinfo cpus\x1b[K\r\n* CPU #0: thread_id=7\r\n(qemu) ").unwrap();
            c.write_all(b"info registers -a\x1b[K\r\nRIP=ffffffff81073b8e RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1\r\n(qemu) ").unwrap();
            std::thread::sleep(Duration::from_secs(5));
        });
        let r = b.cpu_report().unwrap();
        assert!(r.contains("* CPU #0: thread_id=7") && r.contains("HLT=1"), "{r}");
        assert!(!r.contains('\x1b') && !r.contains('\r'), "{r:?}");
    }

    #[test]
    fn a_kernel_crash_after_the_offset_is_found() {
        let d = tempfile::tempdir().unwrap();
        let b = BoxDir::new(d.path());
        fs::write(b.console_log(), "hearth-box: ready\nKernel panic - not syncing: old\n").unwrap();
        let from = b.console_len();
        assert_eq!(b.kernel_crash_since(from), None, "a crash before the offset is not this command's");
        let mut f = fs::OpenOptions::new().append(true).open(b.console_log()).unwrap();
        std::io::Write::write_all(&mut f, b"kvm [57]: vcpu0 Unhandled WRMSR\nBUG: kernel NULL pointer dereference, address: 0\n").unwrap();
        assert!(b.kernel_crash_since(from).unwrap().starts_with("BUG: kernel NULL pointer"));
        // A CPU whose timer stopped is as lost.
        let from = b.console_len();
        std::io::Write::write_all(&mut f, b"rcu: rcu_sched kthread timer wakeup didn't happen for 99796 jiffies! g16749\n").unwrap();
        assert!(b.kernel_crash_since(from).unwrap().starts_with("kthread timer wakeup"));
    }

    #[test]
    fn a_box_whose_qemu_is_gone_is_dead_with_its_last_words() {
        let d = tempfile::tempdir().unwrap();
        let b = BoxDir::new(d.path());
        assert_eq!(b.death_since(0), None, "never started: nothing died");
        fs::write(b.console_log(), "hearth-box: ready\n").unwrap();
        fs::write(d.path().join("qemu.log"), "qemu: terminating on signal 9\n").unwrap();
        // Our own pid is alive but is not QEMU: the box's QEMU is gone.
        let state = BoxState { pid: std::process::id(), port: 1, started_at: 0, ready_ms: 0, cpus: 1, mem_mib: 1, egress: false, forwards: vec![] };
        b.write_state(&state).unwrap();
        let why = b.death_since(b.console_len()).unwrap();
        assert!(why.starts_with("its QEMU") && why.contains("terminating on signal 9") && why.contains("hearth-box: ready"), "{why}");
        fs::write(b.console_log(), "hearth-box: ready\nKernel panic - not syncing: x\n").unwrap();
        assert!(b.death_since(0).unwrap().starts_with("its kernel crashed"), "a crash is named first");
    }

    #[test]
    fn a_stopped_box_reports_stopped_and_stop_is_a_no_op() {
        let d = tempfile::tempdir().unwrap();
        let b = BoxDir::new(d.path());
        assert!(matches!(b.status(), BoxStatus::Stopped));
        assert!(!b.stop(Duration::from_secs(1)).unwrap());
        assert!(matches!(b.client(), Err(BoxError::NotRunning)));
    }

    #[test]
    fn a_stale_state_file_with_a_non_qemu_pid_is_not_running() {
        let d = tempfile::tempdir().unwrap();
        let b = BoxDir::new(d.path());
        let state = BoxState { pid: std::process::id(), port: 1, started_at: 0, ready_ms: 0, cpus: 1, mem_mib: 1, egress: false, forwards: vec![] };
        b.write_state(&state).unwrap();
        assert!(b.running().is_none(), "our own pid is alive but is not QEMU");
    }

    #[test]
    fn missing_artifacts_are_named() {
        let d = tempfile::tempdir().unwrap();
        let opts = StartOptions {
            qemu: "qemu-system-x86_64".into(),
            mkfs: "mkfs.ext4".into(),
            kernel: d.path().join("no-vmlinux"),
            rootfs: d.path().join("no-rootfs"),
            cache_dir: d.path().into(),
            hearth_bin: "/bin/true".into(),
            cpus: 1,
            mem_mib: 256,
            data_disk_gib: 1,
            egress: false,
            forwards: vec![],
            ready_timeout: Duration::from_secs(1),
        };
        assert!(matches!(BoxDir::new(d.path().join("box")).start(&opts), Err(BoxError::MissingArtifact(p)) if p.contains("no-vmlinux")));
    }
}
