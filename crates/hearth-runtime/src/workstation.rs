//! The lifecycle of workstations: create, start, stop, pause, resume, delete, and the
//! reconciliation that notices a Firecracker that died on its own.
//!
//! Every state-changing operation holds the workstation's directory lock, so two callers
//! (two requests, or a server and a CLI) never start, stop or delete the same workstation at
//! once; reads of the agent connection need no lock. The state on disk is what hearth last
//! made of the workstation; [`Workstation::status`] compares it with the process and records
//! a crash when the process is gone but nobody stopped it.

use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hearth_exec::ExecClient;
use hearth_fs::DirLock;
use hearth_vmm::jail::JailConfig;
use hearth_vmm::vm::{create_ext4_disk, LaunchTimings, Overlay, StopKind, Vm, VmConfig};

use crate::layout::{validate_id, Layout};
use crate::network::NetSpec;
use crate::record::{Record, State};
use crate::spec::{Limits, Spec};
use crate::RuntimeError;
use hearth_proto::unix_ms_now;

/// The host-side programs and kernel every workstation runs with.
#[derive(Debug, Clone)]
pub struct Artifacts {
    pub firecracker: PathBuf,
    pub kernel: PathBuf,
    /// `mkfs.ext4`, for workstations' own disks.
    pub mkfs: PathBuf,
}

/// Running Firecracker jailed: each workstation's VMM gets its own uid, chroot and cgroup.
#[derive(Debug, Clone)]
pub struct Jail {
    pub jailer: PathBuf,
    /// Workstations' uids (and gids) are allocated from here up.
    pub uid_base: u32,
}

/// Memory a jailed Firecracker may use beyond its guest's: its own code, buffers, devices,
/// and the host page cache of its disks, which is charged to its cgroup (a tight limit made
/// the kernel kill VMs under disk or terminal load in the box).
const VMM_MEM_OVERHEAD_MIB: u64 = 1024;
/// Tasks a jailed Firecracker may have beyond one per vCPU (API, event loop, helpers).
const VMM_EXTRA_TASKS: u32 = 32;

/// All workstations under one data directory.
#[derive(Debug, Clone)]
pub struct Runtime {
    root: PathBuf,
    artifacts: Artifacts,
    limits: Limits,
    jail: Option<Jail>,
    /// How long a guest may take from InstanceStart to its agent's readiness line.
    pub ready_timeout: Duration,
    /// How long each stop step (agent shutdown, then Ctrl-Alt-Del) may take.
    pub stop_timeout: Duration,
    /// Kernel arguments every workstation boots with on top of the VMM's own (for example
    /// [`hearth_vmm::halt_poll_boot_args`]).
    pub guest_boot_args: Vec<String>,
}

/// A workstation as it is now.
#[derive(Debug, Clone)]
pub struct Status {
    pub id: String,
    pub spec: Spec,
    pub record: Record,
    /// Its Firecracker, while it runs.
    pub pid: Option<u32>,
}

/// One workstation, by id.
#[derive(Debug, Clone)]
pub struct Workstation {
    rt: Runtime,
    id: String,
    layout: Layout,
    spec: Spec,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, RuntimeError> {
    let bytes = fs::read(path).map_err(RuntimeError::io(format!("reading {}", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| RuntimeError::Io { what: format!("parsing {}", path.display()), source: std::io::Error::other(e) })
}

/// Names a workstation directory being deleted takes (not a valid id, so never listed).
const DELETING: &str = ".deleting-";

/// Removes `dir` and all in it, if it exists.
pub(crate) fn remove_tree(dir: &Path) -> Result<(), RuntimeError> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(RuntimeError::io(format!("removing {}", dir.display()))(e)),
        _ => Ok(()),
    }
}

pub(crate) fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), RuntimeError> {
    let bytes = serde_json::to_vec_pretty(value).expect("records serialize");
    hearth_fs::write_atomic(path, &bytes).map_err(RuntimeError::io(format!("writing {}", path.display())))
}

impl Runtime {
    /// Workstations live in `<data_dir>/workstations`.
    pub fn new(data_dir: &Path, artifacts: Artifacts, limits: Limits) -> Result<Self, RuntimeError> {
        let root = data_dir.join("workstations");
        fs::create_dir_all(&root).map_err(RuntimeError::io(format!("creating {}", root.display())))?;
        let rt = Self { root, artifacts, limits, jail: None, ready_timeout: Duration::from_secs(120), stop_timeout: Duration::from_secs(30), guest_boot_args: vec![] };
        rt.finish_cut_short_deletes()?;
        Ok(rt)
    }

    /// Removes what deletes cut short (by a crash) left; nothing refers to it any more.
    fn finish_cut_short_deletes(&self) -> Result<(), RuntimeError> {
        let _all = self.lock_root()?;
        for e in fs::read_dir(&self.root).map_err(RuntimeError::io(format!("listing {}", self.root.display())))?.flatten() {
            if e.file_name().to_string_lossy().starts_with(DELETING) {
                remove_tree(&e.path())?;
            }
        }
        Ok(())
    }

    /// Runs every workstation's Firecracker under the jailer (needs root).
    pub fn with_jail(mut self, jail: Jail) -> Self {
        self.jail = Some(jail);
        self
    }

    /// The lowest uid from the jail's base no workstation has; call with the root locked.
    fn free_uid(&self, base: u32) -> Result<u32, RuntimeError> {
        let mut used = Vec::new();
        for id in self.ids()? {
            if let Ok(rec) = read_json::<Record>(&Layout::new(&self.root, &id).state()) {
                used.extend(rec.jail_uid);
            }
        }
        used.sort_unstable();
        let mut uid = base;
        for u in used {
            if u == uid {
                uid += 1;
            }
        }
        Ok(uid)
    }

    /// The lock of all workstations: taken after a workstation's own, never before.
    fn lock_root(&self) -> Result<DirLock, RuntimeError> {
        DirLock::acquire(&self.root).map_err(RuntimeError::io("locking the workstations"))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Makes a stopped workstation: its directory, its own disk (unless read-only), its spec.
    pub fn create(&self, id: &str, spec: Spec) -> Result<Workstation, RuntimeError> {
        validate_id(id).map_err(|message| RuntimeError::Invalid { field: "id", message })?;
        spec.validate(&self.limits)?;
        if !spec.base_image.is_file() {
            return Err(RuntimeError::Invalid {
                field: "recipe",
                message: format!("base image {} does not exist (build it with `hearth image build`)", spec.base_image.display()),
            });
        }
        let layout = Layout::new(&self.root, id);
        match fs::create_dir(&layout.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(RuntimeError::Exists(id.into())),
            Err(e) => return Err(RuntimeError::io(format!("creating {}", layout.dir.display()))(e)),
        }
        let made = (|| {
            let _lock = DirLock::acquire(&layout.dir).map_err(RuntimeError::io("locking the workstation"))?;
            if !spec.read_only {
                create_ext4_disk(&layout.overlay(), u64::from(spec.disk_gib) << 30, &self.artifacts.mkfs)?;
            }
            fs::create_dir(layout.vm()).map_err(RuntimeError::io("creating the vm directory"))?;
            // uids are allocated under the lock of the whole root, so two creates never share one.
            let _all = self.jail.as_ref().map(|_| self.lock_root()).transpose()?;
            let jail_uid = self.jail.as_ref().map(|j| self.free_uid(j.uid_base)).transpose()?;
            let record = Record {
                state: State::Stopped,
                created_unix_ms: unix_ms_now(),
                started_unix_ms: None,
                stopped_unix_ms: None,
                last_stop: None,
                crash: None,
                jail_uid,
                hibernated_unix_ms: None,
            };
            write_json(&layout.state(), &record)?;
            // Last: a directory without spec.json is a creation that did not finish.
            write_json(&layout.spec(), &spec)
        })();
        if let Err(e) = made {
            let _ = fs::remove_dir_all(&layout.dir);
            return Err(e);
        }
        Ok(Workstation { rt: self.clone(), id: id.into(), layout, spec })
    }

    /// An existing workstation.
    pub fn get(&self, id: &str) -> Result<Workstation, RuntimeError> {
        validate_id(id).map_err(|_| RuntimeError::NotFound(id.into()))?;
        let layout = Layout::new(&self.root, id);
        if !layout.spec().is_file() {
            return Err(RuntimeError::NotFound(id.into()));
        }
        let spec = read_json(&layout.spec())?;
        Ok(Workstation { rt: self.clone(), id: id.into(), layout, spec })
    }

    /// The ids of all workstations, sorted.
    pub fn ids(&self) -> Result<Vec<String>, RuntimeError> {
        let mut ids: Vec<String> = fs::read_dir(&self.root)
            .map_err(RuntimeError::io(format!("listing {}", self.root.display())))?
            .flatten()
            .filter(|e| e.path().join("spec.json").is_file())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|id| validate_id(id).is_ok())
            .collect();
        ids.sort();
        Ok(ids)
    }
}

impl Workstation {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn console_log(&self) -> PathBuf {
        self.layout.console_log()
    }

    /// Its directory lock; `NotFound` once it is deleted, also when that happened while
    /// this waited for the lock ([`Workstation::delete`] moves the directory away under it).
    pub(crate) fn lock(&self) -> Result<DirLock, RuntimeError> {
        let lock = match DirLock::acquire_existing(&self.layout.dir) {
            Ok(lock) => lock,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(RuntimeError::NotFound(self.id.clone())),
            Err(e) => return Err(RuntimeError::io("locking the workstation")(e)),
        };
        if !self.layout.spec().is_file() {
            return Err(RuntimeError::NotFound(self.id.clone()));
        }
        Ok(lock)
    }

    pub(crate) fn conflict(&self, state: State, op: &'static str) -> RuntimeError {
        RuntimeError::Conflict { id: self.id.clone(), state: state.to_string(), op }
    }

    /// Its state now: a workstation recorded as running whose Firecracker is gone is marked
    /// crashed (and stays so until started or stopped).
    pub fn status(&self) -> Result<Status, RuntimeError> {
        let _lock = self.lock()?;
        let (record, vm) = self.reconcile()?;
        Ok(Status { id: self.id.clone(), spec: self.spec.clone(), record, pid: vm.map(|v| v.pid()) })
    }

    /// Reads the record and checks it against the process; call with the lock held.
    pub(crate) fn reconcile(&self) -> Result<(Record, Option<Vm>), RuntimeError> {
        let mut record: Record = read_json(&self.layout.state())?;
        let mut vm = Vm::attach(&self.layout.vm());
        let snapshot = self.layout.snapshot().is_dir();
        if record.state == State::Hibernated && vm.is_some() {
            // Killed between the record and the kill: the snapshot is complete, so the
            // paused VM goes.
            if let Some(vm) = vm.take() {
                vm.kill();
            }
        } else if record.state == State::Hibernated && !snapshot {
            record.state = State::Crashed;
            record.crash = Some("hibernated, but its snapshot is gone".into());
            record.hibernated_unix_ms = None;
            write_json(&self.layout.state(), &record)?;
        } else if matches!(record.state, State::Running | State::Paused) && vm.is_none() && snapshot {
            // The server ended after the snapshot was complete and before the record said so.
            record.state = State::Hibernated;
            record.hibernated_unix_ms = Some(unix_ms_now());
            Vm::forget_dir(&self.layout.vm());
            write_json(&self.layout.state(), &record)?;
        } else if matches!(record.state, State::Running | State::Paused) && vm.is_none() {
            let why = Vm::exit_reason(&self.layout.vm());
            record.state = State::Crashed;
            record.crash = Some(format!("Firecracker exited without being stopped ({why})"));
            record.stopped_unix_ms = Some(unix_ms_now());
            // Its sockets and pid file are stale now.
            Vm::forget_dir(&self.layout.vm());
            write_json(&self.layout.state(), &record)?;
        }
        Ok((record, vm))
    }

    /// Its network from now on (none: no network interface), used by every start.
    pub fn set_network(&self, net: Option<&NetSpec>) -> Result<(), RuntimeError> {
        let _lock = self.lock()?;
        match net {
            Some(n) => write_json(&self.layout.network(), n),
            None => match fs::remove_file(self.layout.network()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(RuntimeError::io("removing network.json")(e)),
                _ => Ok(()),
            },
        }
    }

    /// The network it starts with, if it has one.
    pub fn network(&self) -> Result<Option<NetSpec>, RuntimeError> {
        let path = self.layout.network();
        if !path.exists() {
            return Ok(None);
        }
        read_json(&path).map(Some)
    }

    /// The uid (= gid) its jailed Firecracker runs as; none when unjailed. A tap made for it
    /// must belong to this uid, the only one jailed Firecracker can open it as.
    pub fn jail_uid(&self) -> Result<Option<u32>, RuntimeError> {
        Ok(read_json::<Record>(&self.layout.state())?.jail_uid)
    }

    pub(crate) fn vm_config(&self, record: &Record) -> Result<VmConfig, RuntimeError> {
        let network = self.network()?.map(|n| n.vm_config());
        let a = &self.rt.artifacts;
        let jail = match (&self.rt.jail, record.jail_uid) {
            (Some(j), Some(uid)) => Some(JailConfig {
                jailer: j.jailer.clone(),
                id: self.jail_id(),
                uid,
                gid: uid,
                cgroup: vec![
                    format!("memory.max={}", (u64::from(self.spec.mem_mib) + VMM_MEM_OVERHEAD_MIB) << 20),
                    format!("cpu.max={} 100000", u32::from(self.spec.vcpus) * 100_000),
                    format!("pids.max={}", u32::from(self.spec.vcpus) + VMM_EXTRA_TASKS),
                ],
            }),
            _ => None,
        };
        Ok(VmConfig {
            firecracker: a.firecracker.clone(),
            kernel: a.kernel.clone(),
            base_image: self.spec.base_image.clone(),
            overlay: if self.spec.read_only { Overlay::Tmpfs } else { Overlay::Disk(self.layout.overlay()) },
            vcpus: self.spec.vcpus,
            mem_mib: self.spec.mem_mib,
            smt: self.spec.smt,
            hostname: self.spec.hostname(),
            extra_boot_args: self.rt.guest_boot_args.clone(),
            network,
            jail,
        })
    }

    /// The jail's id: unique on the host even when several data directories use the same
    /// workstation ids (a stable hash of this runtime's root in front).
    fn jail_id(&self) -> String {
        let h = self.rt.root.as_os_str().as_encoded_bytes().iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
        format!("h{:08x}-{}", h as u32, self.id)
    }

    /// Boots it; returns once its agent is ready. A guest that is not ready in time is killed
    /// and the error quotes its serial console.
    pub fn start(&self) -> Result<LaunchTimings, RuntimeError> {
        self.start_with(&[])
    }

    /// [`Workstation::start`] with extra kernel arguments (tests break boots with them).
    pub fn start_with(&self, extra_boot_args: &[String]) -> Result<LaunchTimings, RuntimeError> {
        let _lock = self.lock()?;
        let (mut record, _) = self.reconcile()?;
        if matches!(record.state, State::Running | State::Paused | State::Hibernated) {
            return Err(self.conflict(record.state, "start"));
        }
        self.check_base_image()?;
        // Never left behind by a stop or a wake; if one were, the disk about to move on
        // would make its memory a lie.
        remove_tree(&self.layout.snapshot())?;
        let mut cfg = self.vm_config(&record)?;
        cfg.extra_boot_args.extend_from_slice(extra_boot_args);
        let (_, timings) = Vm::launch_timed(&self.layout.vm(), &cfg, self.rt.ready_timeout)?;
        record.state = State::Running;
        record.started_unix_ms = Some(unix_ms_now());
        record.crash = None;
        write_json(&self.layout.state(), &record)?;
        Ok(timings)
    }

    /// Fails when the base image it boots from is gone.
    pub(crate) fn check_base_image(&self) -> Result<(), RuntimeError> {
        if self.spec.base_image.is_file() {
            return Ok(());
        }
        Err(RuntimeError::Io {
            what: format!("starting {}", self.id),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, format!("base image {} is gone", self.spec.base_image.display())),
        })
    }

    /// The runtime it belongs to.
    pub(crate) fn runtime(&self) -> &Runtime {
        &self.rt
    }

    /// Stops it: the agent's ordered shutdown, else Ctrl-Alt-Del, else SIGKILL. Stopping a
    /// stopped, crashed or hibernated workstation (its snapshot discarded) makes it stopped
    /// and says `NotRunning`.
    pub fn stop(&self) -> Result<StopKind, RuntimeError> {
        let _lock = self.lock()?;
        let (mut record, vm) = self.reconcile()?;
        let kind = match vm {
            Some(vm) => {
                if record.state == State::Paused {
                    // A paused guest cannot shut itself down.
                    let _ = vm.resume();
                }
                vm.stop(self.rt.stop_timeout)
            }
            None => StopKind::NotRunning,
        };
        // A hibernated one's memory is dropped (before the record leaves hibernated: a
        // snapshot must never outlive it).
        remove_tree(&self.layout.snapshot())?;
        record.state = State::Stopped;
        record.hibernated_unix_ms = None;
        record.stopped_unix_ms = Some(unix_ms_now());
        record.last_stop = Some(kind.as_str().into());
        write_json(&self.layout.state(), &record)?;
        Ok(kind)
    }

    pub fn pause(&self) -> Result<(), RuntimeError> {
        self.transition(State::Running, State::Paused, "pause", Vm::pause)
    }

    pub fn resume(&self) -> Result<(), RuntimeError> {
        self.transition(State::Paused, State::Running, "resume", |vm| {
            vm.resume()?;
            // It slept through the time it was paused.
            vm.sync_guest()
        })
    }

    fn transition(&self, from: State, to: State, op: &'static str, f: impl FnOnce(&Vm) -> Result<(), hearth_vmm::VmmError>) -> Result<(), RuntimeError> {
        let _lock = self.lock()?;
        let (mut record, vm) = self.reconcile()?;
        let vm = match vm {
            Some(vm) if record.state == from => vm,
            _ => return Err(self.conflict(record.state, op)),
        };
        f(&vm)?;
        record.state = to;
        write_json(&self.layout.state(), &record)
    }

    /// Its running VM, if any.
    pub fn vm(&self) -> Option<Vm> {
        Vm::attach(&self.layout.vm())
    }

    /// A control connection to its agent (no lock: terminals and execs run side by side).
    pub fn agent(&self, timeout: Duration) -> Result<ExecClient<UnixStream>, RuntimeError> {
        let vm = self.vm().ok_or_else(|| RuntimeError::Conflict { id: self.id.clone(), state: "not running".into(), op: "reach its agent" })?;
        Ok(vm.agent(timeout)?)
    }

    /// Kills it if it runs and removes everything it owned.
    pub fn delete(self) -> Result<(), RuntimeError> {
        let lock = self.lock()?;
        if let Some(vm) = Vm::attach(&self.layout.vm()) {
            vm.kill();
        }
        // Moved out of its name under the lock, then emptied: a caller that was waiting for
        // the lock (a status check prompted by the kill's own exit, say) finds it gone, and
        // nobody can put a file back into the directory being emptied.
        // Directories being deleted are touched only under the root's lock, so the sweep of
        // ones a crash left behind ([`Runtime::new`]) never races a delete in progress.
        let all = self.rt.lock_root()?;
        let doomed = self.rt.root.join(format!("{DELETING}{}", self.id));
        remove_tree(&doomed)?;
        fs::rename(&self.layout.dir, &doomed).map_err(RuntimeError::io(format!("moving {} away", self.layout.dir.display())))?;
        drop(lock);
        let removed = remove_tree(&doomed);
        drop(all);
        removed
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    pub(crate) fn runtime(data: &Path) -> (Runtime, Spec) {
        let base = data.join("base.ext4");
        fs::write(&base, b"").unwrap();
        let artifacts = Artifacts { firecracker: "/nonexistent".into(), kernel: "/nonexistent".into(), mkfs: "/nonexistent".into() };
        let spec = Spec { name: "w".into(), vcpus: 1, mem_mib: 256, disk_gib: 0, smt: false, read_only: true, base_image: base };
        (Runtime::new(data, artifacts, Limits::default()).unwrap(), spec)
    }

    /// A status check racing a delete (as the exit watch of the server does: the delete's
    /// kill fires it) must neither fail the delete nor bring the directory back.
    #[test]
    fn a_delete_leaves_nothing_for_a_racing_reader_to_write_into() {
        let d = tempfile::tempdir().unwrap();
        let (rt, spec) = runtime(d.path());
        for round in 0..300 {
            let id = format!("w{round}");
            let ws = rt.create(&id, spec.clone()).unwrap();
            let done = Arc::new(AtomicBool::new(false));
            let reader = {
                let (ws, done) = (ws.clone(), done.clone());
                std::thread::spawn(move || {
                    while !done.load(Ordering::Relaxed) {
                        match ws.status() {
                            Ok(_) | Err(RuntimeError::NotFound(_)) => {}
                            Err(e) => panic!("status while deleting: {e}"),
                        }
                    }
                })
            };
            std::thread::yield_now();
            let deleted = ws.delete();
            // The reader goes on a little past the delete, as a late watch would.
            for _ in 0..50 {
                assert!(matches!(rt.get(&id).and_then(|w| w.status()), Err(RuntimeError::NotFound(_))));
            }
            done.store(true, Ordering::Relaxed);
            reader.join().unwrap();
            deleted.unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert!(!rt.root().join(&id).exists(), "round {round}: the directory came back");
        }
        let left: Vec<_> = fs::read_dir(rt.root()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from(".lock")]);
    }

    #[test]
    fn deletes_a_crash_cut_short_are_finished_and_never_listed() {
        let d = tempfile::tempdir().unwrap();
        let (rt, spec) = runtime(d.path());
        rt.create("kept", spec.clone()).unwrap();
        rt.create("half", spec).unwrap();
        // As a delete leaves it when the server dies between the move and the removal.
        fs::rename(rt.root().join("half"), rt.root().join(format!("{DELETING}half"))).unwrap();
        assert_eq!(rt.ids().unwrap(), vec!["kept".to_string()]);
        let (rt, _) = runtime(d.path());
        assert!(!rt.root().join(format!("{DELETING}half")).exists());
        assert_eq!(rt.ids().unwrap(), vec!["kept".to_string()]);
    }
}
