//! A fake [`Backend`] for tests of the service and its edges: workstations are records in
//! memory, "booting" one is instant, and its agent is the real control-protocol server of
//! hearth-exec running on this host over a unix socket pair (commands, files and terminals
//! are real; they run as the test's user). No Firecracker, no root, no box.
//!
//! Must not: be used outside tests (it is compiled only for them and with the `testing`
//! feature).

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hearth_exec::{ExecClient, ServerConfig};
use hearth_runtime::{Hibernation, NetSpec, RuntimeError, Spec, State, Wake};
use hearth_vmm::vm::StopKind;

use crate::backend::{Backend, VmState};
use crate::config::Config;
use crate::store::Store;
use crate::{Need, Service};

/// The recipe every fake service has an image for.
pub const RECIPE: &str = "test";

struct Vm {
    state: State,
    crash: Option<String>,
    /// The agent's sessions live as long as the VM runs.
    agent: Option<Arc<ServerConfig>>,
}

/// VMs in memory, agents on the host.
pub struct FakeBackend {
    dir: PathBuf,
    vms: Mutex<HashMap<String, Vm>>,
    /// Boots so far (tests count them).
    pub starts: AtomicUsize,
    /// How long making a workstation takes, milliseconds (the real one makes a disk).
    pub create_ms: AtomicU64,
    /// The CPU time each VM has used, as tests set it.
    pub cpu: Mutex<HashMap<String, Duration>>,
    /// Wakes fail as a snapshot that does not load and a cold boot after it that fails
    /// do: the VM is left stopped, its snapshot gone.
    pub wakes_fail: std::sync::atomic::AtomicBool,
}

impl FakeBackend {
    /// Keeps its files (base image, console logs) under `dir`.
    pub fn new(dir: &Path) -> FakeBackend {
        std::fs::write(dir.join("base.ext4"), b"").expect("writing the fake base image");
        FakeBackend {
            dir: dir.to_path_buf(),
            vms: Mutex::default(),
            starts: AtomicUsize::new(0),
            create_ms: AtomicU64::new(0),
            cpu: Mutex::default(),
            wakes_fail: Default::default(),
        }
    }

    fn vms(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vm>> {
        self.vms.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn with<T>(&self, id: &str, f: impl FnOnce(&mut Vm) -> Result<T, RuntimeError>) -> Result<T, RuntimeError> {
        self.vms().get_mut(id).map_or_else(|| Err(RuntimeError::NotFound(id.into())), f)
    }

    /// Makes a running VM die, as a Firecracker that crashed.
    pub fn crash(&self, id: &str, why: &str) {
        let _ = self.with(id, |vm| {
            *vm = Vm { state: State::Crashed, crash: Some(why.into()), agent: None };
            Ok(())
        });
    }

    /// Removes a workstation's directory behind the service's back (it becomes lost).
    pub fn lose(&self, id: &str) {
        self.vms().remove(id);
    }

    fn conflict(id: &str, state: State, op: &'static str) -> RuntimeError {
        RuntimeError::Conflict { id: id.into(), state: state.to_string(), op }
    }
}

fn agent_config() -> ServerConfig {
    ServerConfig {
        token: None,
        env: vec![("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()), ("PS1".into(), "$ ".into())],
        on_shutdown: Box::new(|| {}),
        uptime_ms: || 1,
        capabilities: vec![],
        allow_machine_settings: false,
        ptys: Default::default(),
    }
}

impl Backend for FakeBackend {
    fn base_image(&self, recipe: &str) -> Option<PathBuf> {
        (recipe == RECIPE).then(|| self.dir.join("base.ext4"))
    }

    fn create(&self, id: &str, spec: Spec) -> Result<(), RuntimeError> {
        spec.validate(&hearth_runtime::Limits::default())?;
        std::thread::sleep(Duration::from_millis(self.create_ms.load(Ordering::Relaxed)));
        let mut vms = self.vms();
        if vms.contains_key(id) {
            return Err(RuntimeError::Exists(id.into()));
        }
        vms.insert(id.into(), Vm { state: State::Stopped, crash: None, agent: None });
        Ok(())
    }

    fn delete(&self, id: &str) -> Result<(), RuntimeError> {
        let vm = self.vms().remove(id).ok_or_else(|| RuntimeError::NotFound(id.into()))?;
        if let Some(agent) = vm.agent {
            stop_sessions(&agent);
        }
        Ok(())
    }

    fn ids(&self) -> Result<Vec<String>, RuntimeError> {
        let mut ids: Vec<String> = self.vms().keys().cloned().collect();
        ids.sort();
        Ok(ids)
    }

    fn state(&self, id: &str) -> Result<VmState, RuntimeError> {
        self.with(id, |vm| Ok(VmState { state: vm.state, crash: vm.crash.clone() }))
    }

    fn start(&self, id: &str) -> Result<f64, RuntimeError> {
        self.with(id, |vm| {
            if matches!(vm.state, State::Running | State::Paused | State::Hibernated) {
                return Err(Self::conflict(id, vm.state, "start"));
            }
            *vm = Vm { state: State::Running, crash: None, agent: Some(Arc::new(agent_config())) };
            Ok(())
        })?;
        std::fs::write(self.dir.join(format!("{id}.console.log")), format!("[fake] {id} booted\n"))
            .map_err(|source| RuntimeError::Io { what: "writing the console log".into(), source })?;
        self.starts.fetch_add(1, Ordering::SeqCst);
        Ok(1.0)
    }

    fn stop(&self, id: &str) -> Result<StopKind, RuntimeError> {
        self.with(id, |vm| {
            let kind = if vm.agent.is_some() && vm.state != State::Hibernated { StopKind::Clean } else { StopKind::NotRunning };
            if let Some(agent) = vm.agent.take() {
                stop_sessions(&agent);
            }
            *vm = Vm { state: State::Stopped, crash: None, agent: None };
            Ok(kind)
        })
    }

    fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        self.with(id, |vm| match vm.state {
            State::Running => {
                vm.state = State::Paused;
                Ok(())
            }
            s => Err(Self::conflict(id, s, "pause")),
        })
    }

    fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        self.with(id, |vm| match vm.state {
            State::Paused => {
                vm.state = State::Running;
                Ok(())
            }
            s => Err(Self::conflict(id, s, "resume")),
        })
    }

    /// Its agent and terminals are kept, unreachable until it wakes (as in a snapshot).
    fn hibernate(&self, id: &str) -> Result<Hibernation, RuntimeError> {
        self.with(id, |vm| match vm.state {
            State::Running | State::Paused => {
                vm.state = State::Hibernated;
                Ok(Hibernation::default())
            }
            s => Err(Self::conflict(id, s, "hibernate")),
        })
    }

    fn wake(&self, id: &str) -> Result<Wake, RuntimeError> {
        let fail = self.wakes_fail.load(Ordering::SeqCst);
        self.with(id, |vm| match vm.state {
            State::Hibernated if fail => {
                vm.state = State::Stopped;
                Err(RuntimeError::Io { what: "booting after its snapshot did not load".into(), source: std::io::Error::other("the guest died") })
            }
            State::Hibernated => {
                vm.state = State::Running;
                Ok(Wake::Restored { ms: 1.0 })
            }
            s => Err(Self::conflict(id, s, "wake")),
        })
    }

    fn jail_uid(&self, id: &str) -> Result<Option<u32>, RuntimeError> {
        self.with(id, |_| Ok(None))
    }

    fn set_network(&self, id: &str, _: Option<&NetSpec>) -> Result<(), RuntimeError> {
        self.with(id, |_| Ok(()))
    }

    fn console_log(&self, id: &str) -> Result<PathBuf, RuntimeError> {
        self.with(id, |_| Ok(self.dir.join(format!("{id}.console.log"))))
    }

    fn agent(&self, id: &str, timeout: Duration) -> Result<ExecClient<UnixStream>, RuntimeError> {
        let cfg = self.with(id, |vm| match (&vm.agent, vm.state) {
            (Some(agent), State::Running) => Ok(agent.clone()),
            _ => Err(RuntimeError::Conflict { id: id.into(), state: "not running".into(), op: "reach its agent" }),
        })?;
        let (ours, theirs) = UnixStream::pair().map_err(|source| RuntimeError::Io { what: "making a socket pair".into(), source })?;
        std::thread::spawn(move || {
            let _ = hearth_exec::serve_conn(theirs, &cfg);
        });
        ExecClient::hello(ours, None, timeout).map_err(|e| RuntimeError::Io { what: "saying hello to the agent".into(), source: std::io::Error::other(e) })
    }

    fn exit_fd(&self, _: &str) -> Option<std::io::Result<OwnedFd>> {
        None
    }

    /// No process of its own to measure.
    fn rss_bytes(&self, _: &str) -> Option<u64> {
        None
    }

    fn cpu_time(&self, id: &str) -> Option<Duration> {
        self.cpu.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(id).copied()
    }
}

/// Ends every terminal of an agent whose VM goes away (its processes with it).
fn stop_sessions(agent: &ServerConfig) {
    for p in agent.ptys.list() {
        let _ = agent.ptys.close(&p.id);
    }
}

/// The name of the user these tests run as: commands and terminals run as it.
pub fn current_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten().map_or_else(|| "root".into(), |u| u.name)
}

/// A service over a [`FakeBackend`] with an in-memory store, `budget` of room, no network;
/// its commands and terminals run as the current user.
pub fn service(dir: &Path, mut config: Config, budget: Need) -> (Arc<Service>, Arc<FakeBackend>) {
    config.defaults.recipe = RECIPE.into();
    config.defaults.user = current_user();
    // The fake's agent runs on this host: it must not be handed CA certificates to install.
    config.network.ca_certificates.clear();
    let backend = Arc::new(FakeBackend::new(dir));
    let store = Store::in_memory().expect("an in-memory store");
    let svc = Service::new(config, store, Box::new(backend.clone()), None, budget);
    (Arc::new(svc), backend)
}
