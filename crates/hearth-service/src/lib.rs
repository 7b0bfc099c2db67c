//! The service layer: every operation on workstations, once, for every edge (the REST and
//! WebSocket API today; sign-in, the web UI and a Hypha service next). Each operation takes
//! the caller's [`Principal`] and typed input (the wire types of `hearth_proto::api`), checks
//! it against the limits and the caller's rights, and returns typed output or one [`Error`].
//!
//! Layout:
//! - [`principal`]: who asks, and what they may see and do.
//! - [`access`]: accounts and credentials: sign-in, sessions, API tokens, the first
//!   administrator; a presented credential becomes a [`Principal`] here.
//! - [`error`]: the one error enum and its stable codes.
//! - [`workstations`], [`terminals`], [`exec`], [`files`], [`console`]: the operations.
//! - [`audit`]: who did what to which, and when.
//! - [`quota`]: what one user may hold at once.
//! - [`sharing`]: workstations shared with other users, as viewers or collaborators; what
//!   each operation needs of the workstation it names.
//! - [`admission`]: memory, vCPU and disk budgets, and reservations for operations in flight.
//! - [`backend`]: the VMs and images behind the operations (hearth-runtime and the artifact
//!   cache, or a fake in tests).
//! - [`store`]: SQLite: workstations, events, terminal records, versioned migrations.
//! - [`network`]: workstation networking through hearth-net.
//! - [`reconcile`]: the records ↔ the host at start; suspend and resume around a box restart.
//! - [`exits`]: running workstations' VMMs watched; an exit reaches the store at once
//!   (`Service::record_exits`, in reconcile).
//! - [`cleanup`]: the undo stack a multi-step operation unwinds when a step fails.
//! - [`config`]: the TOML configuration, environment overrides, defaults.
//!
//! Must not: know HTTP or any other edge's types (it does not depend on axum, so it cannot);
//! an edge parses, calls one operation here and maps the result.

pub mod access;
pub mod admission;
pub mod audit;
pub mod backend;
pub mod cleanup;
pub mod config;
pub mod console;
pub mod error;
pub mod exec;
pub mod exits;
pub mod files;
pub mod idle;
pub mod metrics;
pub mod network;
pub mod principal;
pub mod quota;
pub mod reconcile;
pub mod sharing;
pub mod store;
pub mod terminals;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;
pub mod trust;
pub mod workstations;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hearth_image::{refs, Cache};
use hearth_proto::api::{Workstation, WorkstationState};
use hearth_proto::unix_ms_now;
use hearth_runtime::{Artifacts, Jail, Limits, Runtime};

pub use crate::admission::Need;
use crate::admission::{Admission, Reservation};
use crate::backend::{Backend, Host};
use crate::config::Config;
pub use crate::error::{Error, Unavailable};
pub use crate::principal::{Principal, Role};
use crate::sharing::Level;
use crate::store::{Row, Store, Transition};

/// How long reaching a workstation's agent may take. A busy host (the box under a test's
/// load, 2026-12-07) has kept a healthy guest's agent from answering its handshake for over
/// 10 s: slow is not broken, and a caller waits rather than gets a 500.
const AGENT_TIMEOUT: Duration = Duration::from_secs(30);
/// The terminal a workstation's setup runs in.
pub const SETUP_TERMINAL: &str = "setup";

/// Everything the operations share.
pub struct Service {
    pub config: Config,
    store: Store,
    backend: Box<dyn Backend>,
    /// The host's budgets for workstations, resolved from the config.
    admission: Admission,
    /// One permit per console follower (`limits.max_console_followers`).
    console_followers: Arc<tokio::sync::Semaphore>,
    /// One permit per live workstation list (`limits.max_list_followers`).
    list_followers: Arc<tokio::sync::Semaphore>,
    /// Becomes true when the server begins to stop: long-lived streams (console follows,
    /// WebSocket terminals) end so a graceful shutdown does not wait on them.
    stopping: tokio::sync::watch::Sender<bool>,
    /// Workstation networking; none when `network.enabled` is false.
    network: Option<network::Net>,
    /// Watches on running workstations' VMMs: their exits reach the store at once.
    exits: exits::Exits,
    /// Sign-in state kept in memory (failed attempts).
    access: access::Access,
    /// Commands running now, per user (their quota's `max_execs`).
    execs: quota::Running,
    /// Each running workstation's use, for idle hibernation.
    activity: idle::Activity,
    /// One wake at a time per workstation: callers that find it hibernated at once wait for
    /// the first one's wake instead of each reserving its room again.
    waking: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// The lifecycle's timings, for `GET /metrics`.
    metrics: metrics::Metrics,
    /// The extra CA certificates guests trust (PEM; empty: none), see [`trust`].
    guest_cas: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
#[error("{what}: {message}")]
pub struct OpenError {
    pub what: &'static str,
    pub message: String,
}

fn setup(what: &'static str) -> impl Fn(String) -> OpenError {
    move |message| OpenError { what, message }
}

impl Service {
    /// Opens everything the service needs on this host: the database, the runtime with its
    /// artifacts, workstation networking (its rules go in before anything can make a
    /// workstation's network: fail closed).
    pub fn open(config: Config, data_dir: &Path, cache_dir: &Path) -> Result<Service, OpenError> {
        std::fs::create_dir_all(data_dir).map_err(|e| setup("creating the data directory")(e.to_string()))?;
        let store = Store::open(&data_dir.join("hearth.db")).map_err(|e| setup("opening the database")(e.to_string()))?;
        let cache = Cache::new(cache_dir);
        let file = |name: &str, f: &str| cache.resolve_file(name, f).map_err(|e| setup("finding artifacts (run `hearth image build`)")(e.to_string()));
        let artifacts = Artifacts { firecracker: file(refs::FIRECRACKER, "firecracker")?, kernel: file(refs::GUEST_KERNEL, "vmlinux")?, mkfs: "mkfs.ext4".into() };
        let l = &config.limits;
        let limits = Limits { max_vcpus: l.max_vcpus, min_mem_mib: l.min_mem_mib, max_mem_mib: l.max_mem_mib, max_disk_gib: l.max_disk_gib };
        let mut runtime = Runtime::new(data_dir, artifacts, limits).map_err(|e| setup("opening the workstations")(e.to_string()))?;
        let halt_poll = config.guest_halt_poll();
        runtime.guest_boot_args = hearth_vmm::halt_poll_boot_args(halt_poll);
        tracing::info!(guest_halt_poll_us = halt_poll.as_micros() as u64, "idle workstation vCPUs poll this long before they halt");
        if config.jail {
            runtime = runtime.with_jail(Jail { jailer: file(refs::FIRECRACKER, "jailer")?, uid_base: config.jail_uid_base });
        }
        let host = admission::host_defaults(data_dir);
        let or_host = |set: u64, host: u64| if set > 0 { set } else { host };
        let budget = Need { mem_mib: or_host(l.mem_budget_mib, host.mem_mib), vcpus: or_host(l.vcpu_budget, host.vcpus), disk_gib: or_host(l.disk_budget_gib, host.disk_gib) };
        tracing::info!(mem_mib = budget.mem_mib, vcpus = budget.vcpus, disk_gib = budget.disk_gib, "workstation budgets");
        let network = network::open(&config.network).map_err(|e| setup("setting up workstation networking (network.enabled = false turns it off)")(e.to_string()))?;
        Ok(Service::new(config, store, Box::new(Host { runtime, cache }), network, budget))
    }

    /// A service over `backend` (tests pass a fake one).
    pub fn new(config: Config, store: Store, backend: Box<dyn Backend>, network: Option<network::Net>, budget: Need) -> Service {
        let console_followers = Arc::new(tokio::sync::Semaphore::new(config.limits.max_console_followers));
        let list_followers = Arc::new(tokio::sync::Semaphore::new(config.limits.max_list_followers));
        let access = access::Access::new(&config.auth, &config.hypha);
        let guest_cas = trust::load(&config.network.ca_certificates);
        Service {
            config,
            store,
            backend,
            admission: Admission::new(budget),
            console_followers,
            list_followers,
            stopping: tokio::sync::watch::Sender::new(false),
            network,
            exits: Default::default(),
            access,
            execs: Default::default(),
            activity: Default::default(),
            waking: Default::default(),
            metrics: Default::default(),
            guest_cas,
        }
    }

    /// Tells long-lived streams to end: the server is stopping.
    pub fn begin_stopping(&self) {
        self.stopping.send_replace(true);
    }

    /// Becomes true when the server begins to stop.
    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// This host's budgets, what is held of them, and the workstations by state
    /// (administrators).
    pub async fn host(self: &Arc<Self>, who: &Principal) -> Result<hearth_proto::api::HostStatus, Error> {
        who.must_be_admin()?;
        self.run(|s| {
            let (rows, used) = s.holdings()?;
            let mut by_state = std::collections::BTreeMap::new();
            for r in &rows {
                *by_state.entry(r.state.as_str().to_string()).or_insert(0) += 1;
            }
            let res = |n: Need| hearth_proto::api::Resources { mem_mib: n.mem_mib, vcpus: n.vcpus, disk_gib: n.disk_gib };
            Ok(hearth_proto::api::HostStatus { budget: res(s.admission.budget), in_use: res(used), workstations: by_state })
        })
        .await
    }

    /// Every record, and what they hold of the budgets counted as admission counts it: the
    /// records are read under the reservations' lock.
    fn holdings(&self) -> Result<(Vec<Row>, Need), Error> {
        let mut rows = Vec::new();
        let used = self.admission.in_use(|| {
            rows = self.store.list()?;
            Ok::<_, Error>(rows.clone())
        })?;
        Ok((rows, used))
    }

    /// Saves workstation `id` to its snapshot and records it, `why` opening its event (the
    /// time it took and where it went follow); counted in the metrics. The outer error is
    /// the hibernation's (the VM runs on as it was); the inner one the record's, of a
    /// workstation that did hibernate (a caller must not then stop it: that drops its memory).
    fn hibernate_now(&self, id: &str, why: &str) -> Result<Result<(), Error>, hearth_runtime::RuntimeError> {
        let t = std::time::Instant::now();
        let took = self.backend.hibernate(id)?;
        let secs = t.elapsed().as_secs_f64();
        self.metrics.hibernated(secs);
        Ok(self.store.record(id, Transition::Hibernated { why: &format!("{why}; saved in {secs:.1} s ({took})") }, unix_ms_now()).map_err(Error::from))
    }

    /// How many workstations the server holds (all owners').
    pub async fn count(self: &Arc<Self>) -> Result<u64, Error> {
        self.run(|s| Ok(s.store.count()?)).await
    }

    /// Runs blocking work (the backend, the store, the agent) off the async threads.
    async fn run<T: Send + 'static>(self: &Arc<Self>, f: impl FnOnce(&Service) -> Result<T, Error> + Send + 'static) -> Result<T, Error> {
        let svc = self.clone();
        tokio::task::spawn_blocking(move || f(&svc)).await.map_err(|e| Error::internal(format!("a worker failed: {e}")))?
    }

    /// The record of workstation `id` as `who` may have it (`need`: see
    /// [`sharing::Level`]), with its state brought up to date from its VM.
    fn current(&self, who: &Principal, id: &str, need: Level) -> Result<Row, Error> {
        self.refresh(self.visible_as(who, id, need)?)
    }

    /// The row with its state as its VM has it: a VM that died on its own is recorded as
    /// crashed, with an event; a workstation whose directory is gone is shown lost.
    fn refresh(&self, mut row: Row) -> Result<Row, Error> {
        let vm = match self.backend.state(&row.id) {
            Ok(vm) => vm,
            // Its directory is gone (or went while this waited for its lock): nothing can
            // run it any more.
            Err(hearth_runtime::RuntimeError::NotFound(_)) => return Ok(Row { state: WorkstationState::Lost, ..row }),
            Err(e) => return Err(e.into()),
        };
        let state = state_of(vm.state);
        if state != row.state {
            // Only a crash is news to record here; any other difference is an operation in
            // flight (a start whose record is being written), shown as the runtime has it.
            if state == WorkstationState::Crashed {
                let crash = vm.crash.clone().unwrap_or_default();
                self.store.record(&row.id, Transition::Crashed { why: &crash }, unix_ms_now())?;
            }
            row.state = state;
            row.crash = vm.crash;
        }
        Ok(row)
    }

    /// Records a boot that succeeded: its row running, `why` its `started` event, its VMM
    /// watched from now on ([`crate::exits`]).
    fn record_started(&self, id: &str, why: &str) -> Result<(), Error> {
        self.exits.watch(self.backend.as_ref(), id);
        self.store.record(id, Transition::Started { why }, unix_ms_now())?;
        // Before its setup, whose pip install may need them.
        if let Err(e) = self.trust_cas(id) {
            let _ = self.store.event(id, "ca_certificates_failed", &e.to_string(), unix_ms_now());
        }
        self.run_setup(id);
        Ok(())
    }

    /// At a workstation's first boot, starts what it was created to run once (its setup) in
    /// a terminal named `setup`, as the image's user: its output stays there to read and
    /// attach to, and its end (and exit code) shows in the terminal list. A setup that cannot
    /// be started is an event, not a failed boot.
    fn run_setup(&self, id: &str) {
        let setup = match self.store.take_setup(id, unix_ms_now()) {
            Ok(Some(s)) => s,
            Ok(None) => return,
            Err(e) => return tracing::warn!(workstation = id, "reading its setup: {e}"),
        };
        let spec = hearth_proto::control::PtySpec {
            id: Some(SETUP_TERMINAL.into()),
            argv: vec!["bash".into(), "-lc".into(), setup.program()],
            user: Some(self.config.defaults.user.clone()),
            rows: 24,
            cols: 100,
            ..Default::default()
        };
        let opened = self.backend.agent(id, AGENT_TIMEOUT).map_err(Error::from).and_then(|mut a| a.pty_open(spec).map_err(crate::error::agent_error));
        let now = unix_ms_now();
        let _ = match opened {
            Ok(info) => self.record_opened(id, &info).and_then(|()| Ok(self.store.event(id, "setup_started", "in terminal `setup`", now)?)),
            Err(e) => self.store.event(id, "setup_failed", &e.to_string(), now).map_err(Error::from),
        };
    }

    /// Holds room for workstation `id` to hold `need` (see [`Admission`]) until the
    /// reservation drops: drop it after the outcome is recorded.
    fn admit(&self, id: &str, need: Need) -> Result<Reservation<'_>, Error> {
        self.admission.admit(|| self.store.list(), id, need)
    }

    /// Boots `id` and records the outcome either way.
    fn boot(&self, id: &str, why: &str) -> Result<(), Error> {
        let t = std::time::Instant::now();
        match self.backend.start(id) {
            Ok(ready_ms) => {
                self.metrics.ready("cold", t.elapsed().as_secs_f64());
                self.record_started(id, &format!("{why}agent ready {ready_ms:.0} ms after InstanceStart"))
            }
            Err(e) => {
                let err = Error::from(e);
                // A refused start (already running) changed nothing; a failed boot is history.
                if !matches!(err, Error::Conflict(_)) {
                    let _ = self.store.event(id, "start_failed", &err.to_string(), unix_ms_now());
                }
                Err(err)
            }
        }
    }

    /// Wakes `row` if it is hibernated (admitted like a start: its memory and vCPUs come
    /// back); `why` opens its event. A wake another caller finished first is fine.
    fn wake_if_hibernated(&self, row: &Row, why: &str) -> Result<(), Error> {
        if row.state != WorkstationState::Hibernated {
            return Ok(());
        }
        let gate = self.waking.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(row.id.clone()).or_default().clone();
        let _one = gate.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let woken = self.wake_now(row, why);
        self.waking.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&row.id);
        woken
    }

    /// [`Service::wake_if_hibernated`] once it is this caller's turn.
    fn wake_now(&self, row: &Row, why: &str) -> Result<(), Error> {
        // Another caller's wake may have finished while this one waited.
        if self.store.get(&row.id)?.is_none_or(|r| r.state != WorkstationState::Hibernated) {
            return Ok(());
        }
        let _room = self.admit(&row.id, run_need(row))?;
        match self.backend.wake(&row.id) {
            Ok(hearth_runtime::Wake::Restored { ms }) => {
                self.metrics.ready("wake", ms / 1000.0);
                self.exits.watch(self.backend.as_ref(), &row.id);
                self.store.record(&row.id, Transition::Woken { why: &format!("{why}: restored from its snapshot in {ms:.0} ms") }, unix_ms_now())?;
            }
            Ok(hearth_runtime::Wake::ColdBoot { why: failed, ms }) => {
                self.metrics.ready("wake_cold", ms / 1000.0);
                self.exits.watch(self.backend.as_ref(), &row.id);
                let msg = format!("{why}: its snapshot did not load ({failed}); booted from its disks in {ms:.0} ms, its processes lost");
                self.store.record(&row.id, Transition::Started { why: &msg }, unix_ms_now())?;
            }
            // Woken meanwhile by another call.
            Err(hearth_runtime::RuntimeError::Conflict { state, .. }) if state == "running" => {}
            Err(e) => {
                let err = Error::from(e);
                let _ = self.store.event(&row.id, "wake_failed", &err.to_string(), unix_ms_now());
                // A snapshot that did not load is gone, and the boot tried after it failed:
                // the runtime says stopped, and so must the record (it is no longer
                // hibernated; a start boots it from its disks).
                if self.backend.state(&row.id).is_ok_and(|vm| vm.state == hearth_runtime::State::Stopped) {
                    self.store.record(&row.id, Transition::Stopped { why: "its snapshot did not load and a boot from its disks failed" }, unix_ms_now())?;
                }
                return Err(err);
            }
        }
        Ok(())
    }

    /// A control connection to the agent of a workstation `who` may use at `need`, waking
    /// it first when it is hibernated.
    fn agent(&self, who: &Principal, id: &str, need: Level) -> Result<hearth_exec::ExecClient<std::os::unix::net::UnixStream>, Error> {
        let row = self.visible_as(who, id, need)?;
        drop(self.activity.using(id));
        self.wake_if_hibernated(&row, "woken by a call to it")?;
        Ok(self.backend.agent(id, AGENT_TIMEOUT)?)
    }
}

/// The API's state for the runtime's.
fn state_of(s: hearth_runtime::State) -> WorkstationState {
    match s {
        hearth_runtime::State::Stopped => WorkstationState::Stopped,
        hearth_runtime::State::Running => WorkstationState::Running,
        hearth_runtime::State::Paused => WorkstationState::Paused,
        hearth_runtime::State::Crashed => WorkstationState::Crashed,
        hearth_runtime::State::Hibernated => WorkstationState::Hibernated,
    }
}

/// What `r` holds when it runs.
fn run_need(r: &Row) -> Need {
    Need { mem_mib: r.mem_size_mib.into(), vcpus: r.vcpu_count.into(), disk_gib: r.disk_size_gib.into() }
}

impl From<&Row> for Workstation {
    fn from(r: &Row) -> Workstation {
        Workstation {
            id: r.id.clone(),
            name: r.name.clone(),
            owner: r.owner.clone(),
            state: r.state,
            vcpu_count: r.vcpu_count,
            mem_size_mib: r.mem_size_mib,
            disk_size_gib: r.disk_size_gib,
            smt_enabled: r.smt_enabled,
            read_only: r.read_only,
            bandwidth: r.bandwidth,
            recipe: r.recipe.clone(),
            address: r.address.clone(),
            egress: r.slot.map(|_| r.egress),
            created_unix_ms: r.created_ms,
            started_unix_ms: r.started_ms,
            stopped_unix_ms: r.stopped_ms,
            crash: r.crash.clone(),
            shared_as: None,
            vmm_rss_mib: None,
        }
    }
}

/// Fresh random bytes as lowercase hex: ids nobody can guess. Fails rather than hand out a
/// predictable id when the system has no randomness to give.
fn random_hex(bytes: usize) -> Result<String, Error> {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).map_err(|e| Error::internal(format!("no randomness for a new id: {e}")))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}
