//! What every request handler shares: configuration, the store, the workstation runtime, the
//! artifact cache (recipes → base images).

use std::path::PathBuf;
use std::sync::Arc;

use hearth_image::{refs, Cache};
use hearth_proto::{api, unix_ms_now};
use hearth_runtime::{Runtime, State};

use crate::admission::{Admission, Need, Reservation};
use crate::api::error::ApiError;
use crate::config::Config;
use crate::store::{Row, StateTimes, Store};

pub struct App {
    pub config: Config,
    pub store: Store,
    pub runtime: Runtime,
    pub cache: Cache,
    /// Who owns what this server creates (identities arrive with authentication).
    pub owner: String,
    /// The host's budgets for workstations, resolved from the config.
    pub admission: Admission,
    /// One permit per console follower (`limits.max_console_followers`).
    pub console_followers: Arc<tokio::sync::Semaphore>,
    /// Becomes true when the server begins to stop: long-lived streams (console follows,
    /// WebSocket terminals) end so the graceful shutdown does not wait on them.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// Workstation networking; none when `network.enabled` is false.
    pub network: Option<crate::network::Net>,
    /// Watches on running workstations' Firecrackers: their exits reach the store at once.
    pub exits: crate::exits::Exits,
}

/// Runs blocking work (the runtime, the store, the agent) off the async threads.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::internal(format!("a worker failed: {e}")))?
}

/// How long reaching a workstation's agent may take.
const AGENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl App {
    /// The record of a workstation, 404 when there is none.
    pub fn row(&self, id: &str) -> Result<Row, ApiError> {
        self.store.get(id)?.ok_or_else(|| ApiError::not_found(format!("no workstation `{id}`")))
    }

    /// The agent of a workstation that exists and runs (409 when it does not run).
    pub fn agent(&self, id: &str) -> Result<hearth_exec::ExecClient<std::os::unix::net::UnixStream>, ApiError> {
        self.row(id)?;
        Ok(self.runtime.get(id)?.agent(AGENT_TIMEOUT)?)
    }

    /// The base image of a recipe, built by `hearth image build`.
    pub fn base_image(&self, recipe: &str) -> Result<PathBuf, ApiError> {
        let ok = !recipe.is_empty() && recipe.len() <= 64 && recipe.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(ApiError::invalid("recipe", "must be 1-64 characters of [A-Za-z0-9_-]"));
        }
        self.cache
            .resolve_file(&refs::rootfs(recipe), "rootfs.ext4")
            .map_err(|_| ApiError::invalid("recipe", format!("no image built for recipe `{recipe}` (hearth image build --recipe …)")))
    }

    /// The row, with its state brought up to date from the runtime (a Firecracker that died
    /// on its own is recorded as crashed, with an event).
    pub fn refresh(&self, row: Row) -> Result<Row, ApiError> {
        Ok(self.refreshed(row)?.0)
    }

    /// [`App::refresh`], with the workstation's runtime handle (none when it is lost).
    pub fn refreshed(&self, mut row: Row) -> Result<(Row, Option<hearth_runtime::Workstation>), ApiError> {
        let found = self.runtime.get(&row.id).and_then(|ws| Ok((ws.status()?, ws)));
        let (st, ws) = match found {
            Ok(found) => found,
            // Its directory is gone (or went while this waited for its lock): nothing can run
            // it any more.
            Err(hearth_runtime::RuntimeError::NotFound(_)) => return Ok((Row { state: "lost".into(), ..row }, None)),
            Err(e) => return Err(e.into()),
        };
        let state = st.record.state.to_string();
        if state != row.state {
            // Only a crash is news to record here; any other difference is an operation in
            // flight (a start whose record is being written), shown as the runtime has it.
            if st.record.state == State::Crashed {
                let now = unix_ms_now();
                let crash = st.record.crash.clone().unwrap_or_default();
                self.store.set_state(&row.id, &state, StateTimes { started_ms: None, stopped_ms: Some(now) }, Some(&crash), ("crashed", &crash), now)?;
            }
            row.state = state;
            row.crash = st.record.crash;
        }
        Ok((row, Some(ws)))
    }

    /// Records a boot that succeeded: its row running, `why` its `started` event, its
    /// Firecracker watched from now on ([`crate::exits`]).
    pub fn record_started(&self, ws: &hearth_runtime::Workstation, why: &str) -> Result<(), ApiError> {
        self.exits.watch(ws);
        let now = unix_ms_now();
        self.store.set_state(ws.id(), "running", StateTimes { started_ms: Some(now), stopped_ms: None }, None, ("started", why), now)?;
        Ok(())
    }

    /// Holds room for `need` more (see [`Admission`]) until the reservation drops.
    pub fn admit(&self, need: Need) -> Result<Reservation<'_>, ApiError> {
        self.admission.admit(&self.store.list()?, need)
    }
}

/// What `r` needs to run (its disk exists already).
pub fn run_need(r: &Row) -> Need {
    Need { mem_mib: r.mem_size_mib.into(), vcpus: r.vcpu_count.into(), disk_gib: 0 }
}

pub fn to_api(r: &Row) -> api::Workstation {
    api::Workstation {
        id: r.id.clone(),
        name: r.name.clone(),
        owner: r.owner.clone(),
        state: r.state.clone(),
        vcpu_count: r.vcpu_count,
        mem_size_mib: r.mem_size_mib,
        disk_size_gib: r.disk_size_gib,
        smt_enabled: r.smt_enabled,
        read_only: r.read_only,
        bandwidth: r.bandwidth,
        recipe: r.recipe.clone(),
        address: r.address.clone(),
        egress: r.slot.map(|_| crate::network::to_api(crate::network::stored_egress(&r.egress))),
        created_unix_ms: r.created_ms,
        started_unix_ms: r.started_ms,
        stopped_unix_ms: r.stopped_ms,
        crash: r.crash.clone(),
    }
}

pub type SharedApp = Arc<App>;
