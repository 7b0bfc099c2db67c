//! One workstation VM: a detached Firecracker process and the directory that holds
//! everything it owns.
//!
//! Layout of a VM directory:
//! ```text
//! api.sock          Firecracker's API socket
//! v.sock            the hybrid vsock socket (host → guest agent: CONNECT 1024)
//! console.log       the guest's serial console (and Firecracker's output before its logger
//!                   is set up), appended across runs; past 8 MiB at a start, moved to
//!                   console.log.1
//! firecracker.log   Firecracker's own warnings and errors for the current run; the previous
//!                   run's is kept as firecracker.log.1 (a crash's post-mortem survives a start)
//! firecracker.pid   the running process (absent once stopped)
//! ```
//! The process runs in its own session, so it outlives the process that launched it; a later
//! process re-attaches with [`Vm::attach`]. Disks are the caller's: the base image is shared
//! read-only, the overlay disk (or none, for a read-only workstation) belongs to the workstation.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hearth_exec::ExecClient;
use hearth_proto::control::AGENT_VSOCK_PORT;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::Serialize;

use crate::error::{NotReady, VmmError};
use crate::fc_api::ApiClient;
use crate::jail::{self, BindFile, JailConfig};
use crate::models::{ActionType, Balloon, BootSource, Drive, Entropy, InstanceAction, Logger, MachineConfig, NetworkInterface, RateLimiter, Vsock};
use crate::{AGENT_READY_PREFIX, GUEST_BOOT_ARGS};

/// What a VM writes on its upper layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlay {
    /// An ext4 disk (the workstation's own; its size is the disk quota).
    Disk(PathBuf),
    /// Memory: a read-only workstation, whose writes vanish at stop.
    Tmpfs,
}

#[derive(Debug, Clone)]
pub struct VmConfig {
    pub firecracker: PathBuf,
    pub kernel: PathBuf,
    pub base_image: PathBuf,
    pub overlay: Overlay,
    pub vcpus: u8,
    pub mem_mib: u32,
    pub smt: bool,
    pub hostname: String,
    /// Appended to the kernel command line (tests use it to break a boot on purpose).
    pub extra_boot_args: Vec<String>,
    /// Its network, if it has one.
    pub network: Option<NetConfig>,
    /// Run under the jailer (unprivileged, chrooted, in its own cgroup); none: as we run.
    pub jail: Option<JailConfig>,
}

/// A guest's network: a tap (in the workstation's network namespace) and the settings the
/// agent applies at boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// The network namespace Firecracker runs in (a `/run/netns/NAME` file); none: ours.
    pub netns: Option<PathBuf>,
    pub tap: String,
    pub guest_mac: Option<String>,
    pub address: std::net::Ipv4Addr,
    pub prefix: u8,
    pub gateway: std::net::Ipv4Addr,
    pub mtu: u16,
    pub dns: Vec<std::net::Ipv4Addr>,
    /// Host → guest and guest → host limits.
    pub rx: Option<RateLimiter>,
    pub tx: Option<RateLimiter>,
}

impl NetConfig {
    /// The kernel command line words the agent reads.
    fn boot_args(&self) -> Vec<String> {
        let mut v = vec![format!("hearth.net={}/{},{},{}", self.address, self.prefix, self.gateway, self.mtu)];
        if !self.dns.is_empty() {
            v.push(format!("hearth.dns={}", self.dns.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")));
        }
        v
    }
}

/// How a stop went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopKind {
    /// The agent synced and powered the guest off.
    Clean,
    /// The agent did not answer; Ctrl-Alt-Del did it.
    CtrlAltDel,
    /// Nothing else worked: SIGKILL.
    Killed,
    /// It was not running.
    NotRunning,
}

impl StopKind {
    /// Its name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            StopKind::Clean => "clean",
            StopKind::CtrlAltDel => "ctrl_alt_del",
            StopKind::Killed => "killed",
            StopKind::NotRunning => "not_running",
        }
    }
}

/// Where a launch spent its time.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LaunchTimings {
    /// Firecracker spawned → API socket accepting.
    pub spawn_to_api_ms: f64,
    /// How long Firecracker took to answer InstanceStart (loads the kernel, starts vCPUs).
    pub instance_start_call_ms: f64,
    /// InstanceStart sent → the agent's readiness line seen in the console log.
    pub instance_start_to_ready_ms: f64,
    /// The guest's own uptime when the agent announced itself.
    pub guest_boot_ms: Option<u64>,
    /// Boots it took (2 when the first guest shut down early or hung; see [`Vm::launch_timed`]).
    pub attempts: u32,
}

/// A launched VM, identified by its directory and process.
#[derive(Debug, Clone)]
pub struct Vm {
    dir: PathBuf,
    pid: u32,
}

const PROCESS_NAME: &str = "firecracker";
const PID_FILE: &str = "firecracker.pid";
const FC_LOG: &str = "firecracker.log";
/// The guest's serial console (and what Firecracker and the jailer print), in the VM's dir.
const CONSOLE_LOG: &str = "console.log";
/// console.log grows across runs up to this, then the older runs move to console.log.1.
const MAX_CONSOLE_LOG: u64 = 8 << 20;
/// How often the guest reports memory statistics to the balloon device.
const BALLOON_STATS_SECS: u32 = 5;
/// Bound on writing a full snapshot: Firecracker answers once all of guest memory is in the
/// file (8.6-10.3 s for 512 MiB in the box, past the API client's usual 10 s).
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(180);

/// Console bytes quoted in a failure.
const TAIL_BYTES: usize = 3000;

/// The last [`TAIL_BYTES`] of `text`, cut at a character boundary.
fn tail_of(text: &str) -> &str {
    &text[text.ceil_char_boundary(text.len().saturating_sub(TAIL_BYTES))..]
}

/// The end of the file at `path` (empty when there is none).
fn file_tail(path: &Path) -> String {
    let text = fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    tail_of(&text).to_string()
}

/// The end of the serial console of the VM whose files live in `dir`: what its guest said
/// last (a panic, the agent restarted by its init), for a failure to quote.
pub fn console_tail(dir: &Path) -> String {
    file_tail(&dir.join(CONSOLE_LOG))
}

impl Vm {
    /// Boots a VM whose files live in `dir`, returning once its agent announced readiness.
    /// A guest that is not ready within `ready_timeout` is killed; the error quotes its console.
    pub fn launch(dir: &Path, cfg: &VmConfig, ready_timeout: Duration) -> Result<Vm, VmmError> {
        Vm::launch_timed(dir, cfg, ready_timeout).map(|(vm, _)| vm)
    }

    /// [`Vm::launch`], also saying where the time went.
    ///
    /// A guest whose agent is not up and that did not panic is booted once more: one that shut
    /// itself down (a triple fault: seen about once in 60 boots of 2-vCPU guests under the
    /// box's emulated nested virtualization) or one still running but silent at the deadline
    /// (a boot hang: seen once in about 300 boots there). The retry is noted in the console
    /// log and counted in [`LaunchTimings::attempts`]; a second failure is the error.
    pub fn launch_timed(dir: &Path, cfg: &VmConfig, ready_timeout: Duration) -> Result<(Vm, LaunchTimings), VmmError> {
        let mut attempt = 1;
        loop {
            match Vm::launch_once(dir, cfg, ready_timeout) {
                Ok((vm, timings)) => return Ok((vm, LaunchTimings { attempts: attempt, ..timings })),
                Err(VmmError::NotReady { why, console_tail }) if attempt == 1 && !console_tail.contains("Kernel panic") => {
                    let what = if console_tail.contains(GUEST_RESET_LINE) {
                        "the guest shut down before its agent was up"
                    } else if why == NotReady::TimedOut {
                        "the guest's agent was not up in time"
                    } else {
                        return Err(VmmError::NotReady { why, console_tail });
                    };
                    let note = format!("hearth: {what} (no panic): booting it once more\n");
                    let _ = fs::OpenOptions::new().append(true).open(dir.join(CONSOLE_LOG)).and_then(|mut f| std::io::Write::write_all(&mut f, note.as_bytes()));
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn launch_once(dir: &Path, cfg: &VmConfig, ready_timeout: Duration) -> Result<(Vm, LaunchTimings), VmmError> {
        let t_spawn = Instant::now();
        let netns = cfg.network.as_ref().and_then(|n| n.netns.as_deref());
        let jail = cfg.jail.as_ref().map(|j| (j, jail_files(cfg)));
        let (vm, console_start) = Vm::spawn(dir, &cfg.firecracker, netns, jail)?;
        let booted = vm.wait_api().and_then(|()| {
            let spawn_to_api = t_spawn.elapsed();
            vm.configure(cfg)?;
            let t_start = Instant::now();
            // InstanceStart builds the guest's memory and vCPUs before it answers: seconds in a
            // busy box. Its deadline is the boot's own.
            vm.api().with_timeout(ready_timeout).put("/actions", &InstanceAction { action_type: ActionType::InstanceStart })?;
            let start_call = t_start.elapsed();
            let (seen_at, guest_boot_ms) = vm.wait_ready(&vm.console_log(), console_start, ready_timeout)?;
            vm.sync_guest()?;
            Ok(LaunchTimings {
                spawn_to_api_ms: ms(spawn_to_api),
                instance_start_call_ms: ms(start_call),
                instance_start_to_ready_ms: ms(seen_at.duration_since(t_start)),
                guest_boot_ms,
                attempts: 1,
            })
        });
        match booted {
            Ok(timings) => Ok((vm, timings)),
            Err(e) => {
                vm.kill();
                Err(e)
            }
        }
    }

    /// Starts a detached Firecracker for `dir` (stale sockets removed, console appended to,
    /// pid file written). Returns the VM and where this run's console output begins.
    fn spawn(dir: &Path, firecracker: &Path, netns: Option<&Path>, jail: Option<(&JailConfig, Vec<BindFile>)>) -> Result<(Vm, u64), VmmError> {
        let io = |what: &str| {
            let what = what.to_string();
            move |source| VmmError::Io { what: what.clone(), source }
        };
        fs::create_dir_all(dir).map_err(io("creating the VM directory"))?;
        // v.sock too: its path comes back from a snapshot, and a stale file breaks the VM.
        Vm::forget_dir(dir);
        // The console is appended to across runs; past a bound, the older runs go aside.
        if fs::metadata(dir.join(CONSOLE_LOG)).is_ok_and(|m| m.len() > MAX_CONSOLE_LOG) {
            let _ = fs::rename(dir.join(CONSOLE_LOG), dir.join("console.log.1"));
        }
        let console = fs::OpenOptions::new().create(true).append(true).open(dir.join(CONSOLE_LOG)).map_err(io("opening console.log"))?;
        // Firecracker writes its log from offset 0 (no O_APPEND): keep the last run's aside.
        let _ = fs::rename(dir.join(FC_LOG), dir.join(format!("{FC_LOG}.1")));
        let console_start = console.metadata().map(|m| m.len()).unwrap_or(0);
        let console_err = console.try_clone().map_err(io("cloning console.log"))?;
        let (mut cmd, binary) = match &jail {
            Some((cfg, files)) => (jail::command(dir, cfg, firecracker, files, FC_LOG)?, cfg.jailer.clone()),
            None => {
                fs::File::create(dir.join(FC_LOG)).map_err(io("creating firecracker.log"))?;
                let mut cmd = Command::new(firecracker);
                cmd.arg("--api-sock").arg(dir.join("api.sock")).args(["--id", "hearth"]).current_dir(dir);
                (cmd, firecracker.to_path_buf())
            }
        };
        cmd.stdin(Stdio::null()).stdout(console).stderr(console_err);
        // Opened here, entered in the child: its tap lives in that namespace.
        let netns = netns.map(|p| fs::File::open(p).map_err(io(&format!("opening network namespace {}", p.display())))).transpose()?;
        // SAFETY: setsid and setns are async-signal-safe. Its own session: the VM outlives us
        // and our terminal's signals.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(ns) = &netns {
                    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
                }
                nix::unistd::setsid().map(|_| ()).map_err(std::io::Error::from)
            });
        }
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(source) => {
                Vm::forget_dir(dir);
                return Err(VmmError::Spawn { binary, source });
            }
        };
        let vm = Vm { dir: dir.to_path_buf(), pid: child.id() };
        if let Err(e) = hearth_fs::write_atomic(&dir.join(PID_FILE), vm.pid.to_string().as_bytes()) {
            vm.kill();
            return Err(io("writing the pid file")(e));
        }
        Ok((vm, console_start))
    }

    /// Waits until the API socket accepts connections (not merely exists).
    fn wait_api(&self) -> Result<(), VmmError> {
        let api = self.api();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !api.is_listening() {
            if !self.is_running() || Instant::now() > deadline {
                // Whatever Firecracker or the jailer said on the way out is on its stderr.
                let console_tail = console_tail(&self.dir);
                return Err(VmmError::ApiNotReady { socket: api.socket().to_path_buf(), timeout: Duration::from_secs(10), console_tail });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }

    fn configure(&self, cfg: &VmConfig) -> Result<(), VmmError> {
        let api = self.api();
        // Inside a jail Firecracker sees its chroot: the files are where jail_files put them.
        let jailed = cfg.jail.is_some();
        let at = |host: &Path, name: &str| if jailed { format!("/{name}") } else { path_str(host) };
        let run = self.run_dir();
        // Info, not Warning: Firecracker's lifecycle lines are the post-mortem of a VM that
        // ended on its own ("Received KVM_EXIT_SHUTDOWN signal": its guest reset itself).
        api.put("/logger", &Logger { log_path: at(&run.join(FC_LOG), FC_LOG), level: "Info".into(), show_level: true, show_log_origin: false })?;
        let overlay_arg = match cfg.overlay {
            Overlay::Disk(_) => "hearth.overlay=/dev/vdb",
            Overlay::Tmpfs => "hearth.overlay=tmpfs",
        };
        let mut args = vec![GUEST_BOOT_ARGS.to_string(), overlay_arg.into(), format!("hearth.hostname={}", cfg.hostname)];
        if let Some(net) = &cfg.network {
            args.extend(net.boot_args());
            api.put(
                "/network-interfaces/eth0",
                &NetworkInterface { iface_id: "eth0".into(), host_dev_name: net.tap.clone(), guest_mac: net.guest_mac.clone(), rx_rate_limiter: net.rx, tx_rate_limiter: net.tx },
            )?;
        }
        args.extend(cfg.extra_boot_args.iter().cloned());
        api.put("/boot-source", &BootSource { kernel_image_path: at(&cfg.kernel, KERNEL_NAME), boot_args: args.join(" "), initrd_path: None })?;
        let base = Drive { drive_id: "base".into(), path_on_host: at(&cfg.base_image, BASE_NAME), is_root_device: true, is_read_only: true, rate_limiter: None };
        api.put("/drives/base", &base)?;
        if let Overlay::Disk(disk) = &cfg.overlay {
            api.put(
                "/drives/overlay",
                &Drive { drive_id: "overlay".into(), path_on_host: at(disk, OVERLAY_NAME), is_root_device: false, is_read_only: false, rate_limiter: None },
            )?;
        }
        api.put("/machine-config", &MachineConfig { vcpu_count: cfg.vcpus, mem_size_mib: cfg.mem_mib, smt: cfg.smt.then_some(true) })?;
        api.put("/vsock", &Vsock { guest_cid: 3, uds_path: at(&run.join("v.sock"), "v.sock") })?;
        api.put("/entropy", &Entropy::default())?;
        // Empty at boot; inflating it later hands an idle guest's memory back to the host.
        api.put("/balloon", &Balloon { amount_mib: 0, deflate_on_oom: true, stats_polling_interval_s: BALLOON_STATS_SECS })?;
        Ok(())
    }

    /// Watches the console file (not the vsock: polling it steals CPU from a booting guest).
    /// Returns when the readiness line was seen and the guest uptime it reports.
    fn wait_ready(&self, console: &Path, from: u64, timeout: Duration) -> Result<(Instant, Option<u64>), VmmError> {
        let deadline = Instant::now() + timeout;
        let mut seen = String::new();
        let mut offset = from;
        loop {
            if let Ok(mut f) = fs::File::open(console) {
                let _ = f.seek(SeekFrom::Start(offset));
                let mut buf = Vec::new();
                if f.read_to_end(&mut buf).is_ok() {
                    offset += buf.len() as u64;
                    seen.push_str(&String::from_utf8_lossy(&buf));
                }
            }
            if let Some((_, rest)) = seen.split_once(AGENT_READY_PREFIX) {
                if rest.contains('\n') {
                    return Ok((Instant::now(), parse_boot_ms(rest)));
                }
            }
            let why = if !self.is_running() {
                NotReady::Exited
            } else if Instant::now() > deadline {
                NotReady::TimedOut
            } else {
                // Short: this poll sets the resolution of the boot-time measurement.
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            let mut console_tail = tail_of(&seen).to_string();
            let fc_log = self.firecracker_log_tail();
            if !fc_log.trim().is_empty() {
                console_tail.push_str("\n--- firecracker.log ---\n");
                console_tail.push_str(&fc_log);
            }
            return Err(VmmError::NotReady { why, console_tail });
        }
    }

    /// Re-attaches to the VM in `dir` if its Firecracker is still running.
    pub fn attach(dir: &Path) -> Option<Vm> {
        let pid: u32 = fs::read_to_string(dir.join(PID_FILE)).ok()?.trim().parse().ok()?;
        let vm = Vm { dir: dir.to_path_buf(), pid };
        vm.is_running().then_some(vm)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn console_log(&self) -> PathBuf {
        self.dir.join(CONSOLE_LOG)
    }

    /// The end of Firecracker's own log for this run.
    pub fn firecracker_log_tail(&self) -> String {
        file_tail(&self.run_dir().join(FC_LOG))
    }

    /// Sets the balloon's size: memory taken from the guest and handed back to the host.
    pub fn set_balloon(&self, amount_mib: u32) -> Result<(), VmmError> {
        self.api().patch("/balloon", &serde_json::json!({ "amount_mib": amount_mib }))?;
        Ok(())
    }

    /// The guest's memory statistics as the balloon device last reported them (Firecracker's
    /// JSON: target/actual MiB, free, available, major faults…).
    pub fn balloon_stats(&self) -> Result<serde_json::Value, VmmError> {
        let body = self.api().get("/balloon/statistics")?;
        serde_json::from_slice(&body).map_err(|e| VmmError::Io { what: "parsing balloon statistics".into(), source: std::io::Error::other(e) })
    }

    pub fn api(&self) -> ApiClient {
        ApiClient::new(self.run_dir().join("api.sock"))
    }

    pub fn is_running(&self) -> bool {
        hearth_init::proc::is_alive(self.pid, PROCESS_NAME)
    }

    /// A descriptor that becomes readable when this Firecracker exits (a pidfd: poll it, or
    /// register it with an event loop), so its supervisor learns of the exit as it happens
    /// instead of checking every process it knows of. Checked after it is opened: a pid the
    /// system reused for another process is refused rather than watched.
    pub fn exit_fd(&self) -> std::io::Result<std::os::fd::OwnedFd> {
        use std::os::fd::FromRawFd;
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, self.pid as libc::pid_t, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a descriptor just returned to us, owned by nothing else.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) };
        if !self.is_running() {
            return Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("Firecracker {} is no longer running", self.pid)));
        }
        Ok(fd)
    }

    /// A control connection to the guest agent (hello done).
    pub fn agent(&self, timeout: Duration) -> Result<ExecClient<UnixStream>, VmmError> {
        let stream = crate::vsock::connect(&self.run_dir().join("v.sock"), AGENT_VSOCK_PORT, timeout)?;
        Ok(ExecClient::hello(stream, None, timeout)?)
    }

    /// Pauses the VM and writes a full snapshot (device state + guest memory) to `state` and
    /// `mem` on the host. The VM stays paused; resume it or kill it. A jailed Firecracker
    /// writes inside its chroot (all it can see); the files are then moved to where asked,
    /// which must be on the same filesystem as the VM's directory.
    pub fn snapshot(&self, state: &Path, mem: &Path) -> Result<(), VmmError> {
        self.pause()?;
        let run = self.run_dir();
        let jailed = run != self.dir;
        let (state_arg, mem_arg) = if jailed { (format!("/{SNAPSHOT_OUT_STATE}"), format!("/{SNAPSHOT_OUT_MEM}")) } else { (path_str(state), path_str(mem)) };
        self.api().with_timeout(SNAPSHOT_TIMEOUT).put("/snapshot/create", &serde_json::json!({ "snapshot_type": "Full", "snapshot_path": state_arg, "mem_file_path": mem_arg }))?;
        if jailed {
            for (name, to) in [(SNAPSHOT_OUT_STATE, state), (SNAPSHOT_OUT_MEM, mem)] {
                fs::rename(run.join(name), to).map_err(|source| VmmError::Io { what: format!("moving the snapshot's {name} out of the jail to {}", to.display()), source })?;
            }
        }
        Ok(())
    }

    /// Starts a fresh Firecracker for `dir` from a snapshot of a VM that lived in the same
    /// directory with the same `cfg` (its disks, vsock path and tap are restored by the names
    /// it had, jailed or not) and resumes it; returns once the agent answers, its clock and
    /// randomness refreshed. A jailed one sees the snapshot's files bound into its chroot.
    pub fn restore(dir: &Path, cfg: &VmConfig, state: &Path, mem: &Path, timeout: Duration) -> Result<Vm, VmmError> {
        let netns = cfg.network.as_ref().and_then(|n| n.netns.as_deref());
        let jail = cfg.jail.as_ref().map(|j| {
            let mut files = jail_files(cfg);
            files.push(BindFile { host: state.to_path_buf(), name: SNAPSHOT_STATE, writable: false });
            files.push(BindFile { host: mem.to_path_buf(), name: SNAPSHOT_MEM, writable: false });
            (j, files)
        });
        let (state_arg, mem_arg) = if jail.is_some() { (format!("/{SNAPSHOT_STATE}"), format!("/{SNAPSHOT_MEM}")) } else { (path_str(state), path_str(mem)) };
        let (vm, _) = Vm::spawn(dir, &cfg.firecracker, netns, jail)?;
        let restored = vm.wait_api().and_then(|()| {
            // Loading maps and restores the guest's memory: as long as a snapshot takes.
            vm.api().with_timeout(SNAPSHOT_TIMEOUT).put(
                "/snapshot/load",
                &serde_json::json!({
                    "snapshot_path": state_arg,
                    "mem_backend": {"backend_type": "File", "backend_path": mem_arg},
                    "resume_vm": true,
                }),
            )?;
            // The restored guest resets its vsock transport first: a connection made right
            // after the load can be dropped before hello. Retry until the agent answers.
            let deadline = Instant::now() + timeout;
            loop {
                match vm.agent(Duration::from_secs(5)) {
                    // It woke with the clock of the moment it was snapshotted.
                    Ok(_) => return vm.sync_guest(),
                    Err(e) if Instant::now() > deadline || !vm.is_running() => return Err(e),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        if let Err(e) = restored {
            vm.kill();
            return Err(e);
        }
        Ok(vm)
    }

    /// Sets the guest's wall clock to the host's (no RTC in the guest; restores wake stale)
    /// and mixes fresh host randomness into it (restores of one snapshot wake with the same
    /// random state), over one control connection.
    pub fn sync_guest(&self) -> Result<(), VmmError> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let mut seed = [0u8; 64];
        fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut seed)).map_err(|source| VmmError::Io { what: "reading /dev/urandom".into(), source })?;
        let mut agent = self.agent(Duration::from_secs(10))?;
        agent.set_time(now.as_millis() as u64)?;
        agent.add_entropy(&seed)?;
        Ok(())
    }

    pub fn pause(&self) -> Result<(), VmmError> {
        self.api().patch("/vm", &serde_json::json!({"state": "Paused"}))?;
        Ok(())
    }

    pub fn resume(&self) -> Result<(), VmmError> {
        self.api().patch("/vm", &serde_json::json!({"state": "Resumed"}))?;
        Ok(())
    }

    /// Stops the guest: the agent's ordered shutdown, else Ctrl-Alt-Del, else SIGKILL;
    /// `timeout` for each of the first two.
    pub fn stop(&self, timeout: Duration) -> StopKind {
        if !self.is_running() {
            self.forget();
            return StopKind::NotRunning;
        }
        let kind = if self.agent(Duration::from_secs(5)).and_then(|a| Ok(a.shutdown()?)).is_ok() && hearth_init::proc::wait_gone(self.pid, PROCESS_NAME, timeout) {
            StopKind::Clean
        } else if self.api().put("/actions", &InstanceAction { action_type: ActionType::SendCtrlAltDel }).is_ok() && hearth_init::proc::wait_gone(self.pid, PROCESS_NAME, timeout) {
            StopKind::CtrlAltDel
        } else {
            self.kill();
            StopKind::Killed
        };
        self.forget();
        kind
    }

    /// SIGKILL, then forget the process. The console log stays.
    pub fn kill(&self) {
        if self.is_running() {
            let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
            hearth_init::proc::wait_gone(self.pid, PROCESS_NAME, Duration::from_secs(5));
        }
        self.forget();
    }

    /// Removes what only a running VM needs (sockets, pid file).
    fn forget(&self) {
        Vm::forget_dir(&self.dir);
    }

    /// Removes what a VM that is no longer running left in `dir`: sockets, pid file, and a
    /// jail's chroot and cgroup (its log kept).
    pub fn forget_dir(dir: &Path) {
        jail::cleanup_dir(dir, None);
        for f in ["api.sock", "v.sock", PID_FILE] {
            let _ = fs::remove_file(dir.join(f));
        }
    }

    /// Why the VM in `dir` ended, from Firecracker's log, for a VM that ended without being
    /// stopped (read it before [`Vm::forget_dir`], which moves a jailed log out).
    pub fn exit_reason(dir: &Path) -> String {
        let log = [dir.join(jail::ROOT_LINK).join(FC_LOG), dir.join(FC_LOG)].iter().find_map(|p| fs::read(p).ok()).unwrap_or_default();
        exit_reason_of(&String::from_utf8_lossy(&log))
    }

    /// Where Firecracker's sockets and live log are: the chroot when jailed, else `dir`.
    pub fn run_dir(&self) -> PathBuf {
        let root = self.dir.join(jail::ROOT_LINK);
        if root.is_dir() {
            root
        } else {
            self.dir.clone()
        }
    }
}

/// What Firecracker logs when its guest's vCPU reset the machine without asking (a triple
/// fault: no panic, no word on the console).
pub const GUEST_RESET_LINE: &str = "Received KVM_EXIT_SHUTDOWN";

/// The reason [`Vm::exit_reason`] gives: a guest that reset itself is named as such (the log
/// goes on with "exiting successfully", which would mislead), else the last warning or
/// error, else the last line.
fn exit_reason_of(log: &str) -> String {
    let lines = || log.lines().rev().map(str::trim).filter(|l| !l.is_empty());
    if let Some(l) = lines().find(|l| l.contains(GUEST_RESET_LINE)) {
        return format!("its guest reset itself without a word (a triple fault): {l}");
    }
    match lines().find(|l| l.contains(":WARN]") || l.contains(":ERROR]")).or_else(|| lines().next()) {
        Some(l) => format!("last log line: {l}"),
        None => "Firecracker logged nothing".into(),
    }
}

/// Names of the VM's files inside a jail.
const KERNEL_NAME: &str = "vmlinux";
const BASE_NAME: &str = "base.ext4";
const OVERLAY_NAME: &str = "overlay.ext4";
/// Names of a snapshot's files inside a jail: the one it was restored from (bound in from the
/// host) and the one it writes. Never the same: a restored VM's chroot holds the first pair as
/// bind mounts of files the host has since removed, and a snapshot written through them would
/// land in those, not in the chroot.
const SNAPSHOT_STATE: &str = "snapshot.state";
const SNAPSHOT_MEM: &str = "snapshot.mem";
const SNAPSHOT_OUT_STATE: &str = "snapshot-out.state";
const SNAPSHOT_OUT_MEM: &str = "snapshot-out.mem";

/// The files a jailed VM needs bind-mounted into its chroot.
fn jail_files(cfg: &VmConfig) -> Vec<BindFile> {
    let mut v = vec![BindFile { host: cfg.kernel.clone(), name: KERNEL_NAME, writable: false }, BindFile { host: cfg.base_image.clone(), name: BASE_NAME, writable: false }];
    if let Overlay::Disk(d) = &cfg.overlay {
        v.push(BindFile { host: d.clone(), name: OVERLAY_NAME, writable: true });
    }
    v
}

/// The guest uptime in the readiness line (`… ready boot_ms=812 …`).
pub(crate) fn parse_boot_ms(rest: &str) -> Option<u64> {
    rest.lines().next()?.split_whitespace().find_map(|w| w.strip_prefix("boot_ms=")).and_then(|v| v.parse().ok())
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Creates a sparse ext4 disk of `bytes` (a workstation's overlay disk), atomically.
pub fn create_ext4_disk(path: &Path, bytes: u64, mkfs: &Path) -> Result<(), VmmError> {
    hearth_fs::create_ext4_image(path, bytes, "hearth-overlay", mkfs).map_err(|source| VmmError::Io { what: "creating the overlay disk".into(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_console_tail_is_the_end_of_the_log_cut_at_a_character() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(console_tail(dir.path()), "", "no console yet");
        fs::write(dir.path().join(CONSOLE_LOG), "booted\nKernel panic\n").unwrap();
        assert_eq!(console_tail(dir.path()), "booted\nKernel panic\n");
        // 'é' is two bytes: a cut through its middle moves to the next character.
        let long = format!("{}{}end", "x".repeat(10), "é".repeat(TAIL_BYTES));
        fs::write(dir.path().join(CONSOLE_LOG), &long).unwrap();
        let tail = console_tail(dir.path());
        assert!(tail.len() <= TAIL_BYTES && tail.len() >= TAIL_BYTES - 1, "{}", tail.len());
        assert!(tail.ends_with("éend") && tail.starts_with('é'));
    }

    #[test]
    fn the_exit_fd_becomes_readable_when_the_process_exits() {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let dir = tempfile::tempdir().unwrap();
        // A process whose command line names Firecracker, as `is_running` checks.
        let mut child = Command::new("sh").args(["-c", "sleep 60", PROCESS_NAME]).spawn().unwrap();
        let vm = Vm { dir: dir.path().to_path_buf(), pid: child.id() };
        let fd = vm.exit_fd().unwrap();
        let readable = |ms: u16| {
            let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
            poll(&mut fds, PollTimeout::from(ms)).unwrap() == 1
        };
        assert!(!readable(0), "readable while it runs");
        child.kill().unwrap();
        assert!(readable(10_000), "not readable after it exited");
        child.wait().unwrap();
        // Not Firecracker (this test's own process): refused.
        assert!(Vm { dir: dir.path().to_path_buf(), pid: std::process::id() }.exit_fd().is_err());
    }

    #[test]
    fn a_guest_that_reset_itself_is_named_in_the_exit_reason() {
        // Lines as Firecracker 1.12.1 wrote them when a guest triple-faulted in the box.
        let log = "2026-12-01T14:06:39.99 [h-w:fc_vcpu 1:INFO] Received KVM_EXIT_SHUTDOWN signal\n\
                   2026-12-01T14:06:39.99 [h-w:main:INFO] Vmm is stopping.\n\
                   2026-12-01T14:06:40.11 [h-w:main:INFO] Firecracker exiting successfully. exit_code=0\n";
        let r = exit_reason_of(log);
        assert!(r.starts_with("its guest reset itself") && r.contains("KVM_EXIT_SHUTDOWN"), "{r}");
        let log = "[h:fc_vcpu 0:WARN] something odd\n[h:main:INFO] Vmm is stopping.\n\n";
        assert_eq!(exit_reason_of(log), "last log line: [h:fc_vcpu 0:WARN] something odd");
        assert_eq!(exit_reason_of("[h:main:INFO] Vmm is stopping.\n"), "last log line: [h:main:INFO] Vmm is stopping.");
        assert_eq!(exit_reason_of(""), "Firecracker logged nothing");
    }

    #[test]
    fn the_exit_reason_reads_a_jailed_log_before_an_unjailed_one() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join(FC_LOG), "[h:main:INFO] outside\n").unwrap();
        assert_eq!(Vm::exit_reason(d.path()), "last log line: [h:main:INFO] outside");
        fs::create_dir(d.path().join("chroot")).unwrap();
        std::os::unix::fs::symlink("chroot", d.path().join(jail::ROOT_LINK)).unwrap();
        fs::write(d.path().join("chroot").join(FC_LOG), "[h:fc_vcpu 0:INFO] Received KVM_EXIT_SHUTDOWN signal\n").unwrap();
        assert!(Vm::exit_reason(d.path()).starts_with("its guest reset itself"));
    }
}
