//! `hearth serve`: the REST API over workstations.
//!
//! Layout:
//! - [`config`]: the TOML configuration, environment overrides, defaults.
//! - [`store`]: SQLite: workstations and events, versioned migrations.
//! - [`app`]: what handlers share (config, store, runtime, artifact cache).
//! - [`admission`]: memory, vCPU and disk budgets, and reservations for operations in flight.
//! - [`api`]: axum routes, the OpenAPI document, the error shape, the JSON extractor; one
//!   file per resource (workstations, console, terminals, files).
//! - [`network`]: workstation networking through hearth-net: the host's rules, a
//!   workstation's network at create and delete, the spec its VM starts with.
//! - [`reconcile`]: database ↔ workstation directories and networks at start.
//! - [`exits`]: running workstations' Firecrackers watched; an exit reaches the store at once.
//!
//! Owns the HTTP surface and the database. Workstation VMs are `hearth-runtime`'s; they run
//! detached, so stopping the server (gracefully or not) leaves them running.

pub mod admission;
pub mod api;
pub mod app;
pub mod config;
pub mod exits;
pub mod network;
pub mod reconcile;
pub mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hearth_image::{refs, Cache};
use hearth_runtime::{Artifacts, Jail, Limits, Runtime};

use crate::admission::{Admission, Need};
use crate::app::App;
use crate::config::Config;
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{what}: {message}")]
    Setup { what: &'static str, message: String },
    #[error("listening on {addr}: {source}")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
}

fn setup(what: &'static str) -> impl Fn(String) -> ServeError {
    move |message| ServeError::Setup { what, message }
}

/// Opens everything the server needs: the database, the runtime with its artifacts.
pub fn open(config: Config, data_dir: &Path, cache_dir: &Path) -> Result<App, ServeError> {
    std::fs::create_dir_all(data_dir).map_err(|e| setup("creating the data directory")(e.to_string()))?;
    let store = Store::open(&data_dir.join("hearth.db")).map_err(|e| setup("opening the database")(e.to_string()))?;
    let cache = Cache::new(cache_dir);
    let file =
        |name: &str, f: &str| -> Result<PathBuf, ServeError> { cache.resolve_file(name, f).map_err(|e| setup("finding artifacts (run `hearth image build`)")(e.to_string())) };
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
    let console_followers = Arc::new(tokio::sync::Semaphore::new(config.limits.max_console_followers));
    let stopping = tokio::sync::watch::Sender::new(false);
    // The rules go in before anything can make a workstation's network (fail closed).
    let network = network::open(&config.network).map_err(|e| setup("setting up workstation networking (network.enabled = false turns it off)")(e.to_string()))?;
    Ok(App { config, store, runtime, cache, owner: "local".into(), admission: Admission::new(budget), console_followers, stopping, network, exits: Default::default() })
}

/// How a server behaves at its ends.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServeOptions {
    /// Also stop serving when stdin reaches EOF (the server inside the box: the outer
    /// `hearth serve` closes it to stop the server).
    pub until_stdin_eof: bool,
    /// On the way out, stop running workstations cleanly and mark them to be booted again at
    /// the next start (the box is about to go down, and its VMs with it).
    pub suspend_on_exit: bool,
}

/// Reconciles, boots what was suspended, then serves until SIGTERM or SIGINT (or stdin's
/// EOF). Workstations keep running after, unless `suspend_on_exit`.
pub async fn serve(app: App, opts: ServeOptions, ready: impl FnOnce(std::net::SocketAddr)) -> Result<(), ServeError> {
    let app = Arc::new(app);
    tokio::spawn(exits::record(app.clone()));
    let report = {
        let app = app.clone();
        tokio::task::spawn_blocking(move || reconcile::reconcile(&app)).await.map_err(|e| setup("reconciling")(e.to_string()))?
    }
    .map_err(|e| setup("reconciling")(e.message))?;
    tracing::info!(
        workstations = report.rows,
        running = report.running,
        orphans = report.orphans_removed.len(),
        networks_set_up = report.networks_set_up.len(),
        networks_removed = report.networks_removed.len(),
        "reconciled"
    );
    let addr = app.config.listen;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ServeError::Listen { addr, source })?;
    let local = listener.local_addr().map_err(|source| ServeError::Listen { addr, source })?;
    ready(local);
    // Boots take seconds each: the API answers meanwhile.
    {
        let app = app.clone();
        tokio::task::spawn_blocking(move || reconcile::resume_suspended(&app));
    }
    // Keystroke echoes are small writes: without TCP_NODELAY the second of two (an echo, then
    // the prompt) waits for the first one's delayed ACK, ~40 ms.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "setting TCP_NODELAY");
        }
    });
    axum::serve(listener, api::router(app.clone()))
        .with_graceful_shutdown({
            let app = app.clone();
            async move {
                shutdown_signal(opts.until_stdin_eof).await;
                app.stopping.send_replace(true);
            }
        })
        .await
        .map_err(|source| ServeError::Listen { addr, source })?;
    if opts.suspend_on_exit {
        let app = app.clone();
        tokio::task::spawn_blocking(move || reconcile::suspend_running(&app)).await.map_err(|e| setup("suspending")(e.to_string()))?;
    }
    Ok(())
}

async fn shutdown_signal(until_stdin_eof: bool) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return std::future::pending().await;
    };
    let stdin_eof = async {
        if !until_stdin_eof {
            return std::future::pending().await;
        }
        let _ = tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink())).await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = stdin_eof => {}
    }
}
