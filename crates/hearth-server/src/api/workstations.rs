//! `/api/v1/workstations`: create, list, get, delete, the lifecycle actions, exec and
//! events. Each handler validates, then runs the runtime and store work on
//! the blocking pool; the runtime's per-workstation lock keeps two operations on one
//! workstation from overlapping.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use hearth_proto::api::{CreateWorkstation, ErrorBody, EventList, ExecRequest, ExecResult, Workstation, WorkstationList};
use hearth_proto::control::ExecSpec;
use hearth_runtime::{Spec, State as WsState};
use serde::Deserialize;

use super::error::ApiError;
use super::json::ApiJson;
use crate::admission::Need;
use crate::app::{blocking, run_need, to_api, SharedApp};
use crate::store::{Row, StateTimes};
use hearth_proto::unix_ms_now;

fn new_id() -> String {
    let mut b = [0u8; 6];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("w{hex}")
}

/// Checks a create against the configured limits, naming the field at fault.
fn validate(app: &crate::app::App, req: &CreateWorkstation) -> Result<(), ApiError> {
    let l = &app.config.limits;
    let name_ok = !req.name.trim().is_empty() && req.name.len() <= l.max_name_len && !req.name.chars().any(char::is_control);
    if !name_ok {
        return Err(ApiError::invalid("name", format!("must be 1-{} bytes without control characters", l.max_name_len)));
    }
    if let Some(v) = req.vcpu_count {
        if v == 0 || v > l.max_vcpus {
            return Err(ApiError::invalid("vcpu_count", format!("must be 1-{}", l.max_vcpus)));
        }
    }
    if let Some(m) = req.mem_size_mib {
        if m < l.min_mem_mib || m > l.max_mem_mib {
            return Err(ApiError::invalid("mem_size_mib", format!("must be {}-{}", l.min_mem_mib, l.max_mem_mib)));
        }
    }
    if let Some(d) = req.disk_size_gib {
        if d == 0 || d > l.max_disk_gib {
            return Err(ApiError::invalid("disk_size_gib", format!("must be 1-{}", l.max_disk_gib)));
        }
    }
    if let Some(b) = req.bandwidth {
        for (field, v) in [("bandwidth.rx_mbps", b.rx_mbps), ("bandwidth.tx_mbps", b.tx_mbps)] {
            if v == 0 || v > l.max_bandwidth_mbps {
                return Err(ApiError::invalid(field, format!("must be 1-{} Mbit/s", l.max_bandwidth_mbps)));
            }
        }
    }
    Ok(())
}

/// Creates a workstation and, unless `start` is false, boots it.
#[utoipa::path(post, path = "/api/v1/workstations", request_body = CreateWorkstation,
    responses((status = 201, body = Workstation), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn create(State(app): State<SharedApp>, ApiJson(req): ApiJson<CreateWorkstation>) -> Result<impl IntoResponse, ApiError> {
    validate(&app, &req)?;
    // Before anything is made: a bad or unavailable egress changes nothing.
    let egress = match (&app.network, req.egress) {
        (Some(net), asked) => Some(net.egress_for(asked)?),
        (None, Some(_)) => return Err(ApiError::invalid("egress", "this server has workstation networking turned off (network.enabled = false)")),
        (None, None) => None,
    };
    let row = blocking(move || {
        let d = &app.config.defaults;
        let recipe = req.recipe.clone().unwrap_or_else(|| d.recipe.clone());
        let base_image = app.base_image(&recipe)?;
        if app.store.count()? >= u64::from(app.config.limits.max_workstations) {
            return Err(ApiError::conflict(format!("this server holds at most {} workstations; delete one first", app.config.limits.max_workstations)));
        }
        let read_only = req.read_only.unwrap_or(false);
        let spec = Spec {
            name: req.name.clone(),
            vcpus: req.vcpu_count.unwrap_or(d.vcpu_count),
            mem_mib: req.mem_size_mib.unwrap_or(d.mem_size_mib),
            disk_gib: if read_only { 0 } else { req.disk_size_gib.unwrap_or(d.disk_size_gib) },
            smt: req.smt_enabled.unwrap_or(false),
            read_only,
            base_image,
        };
        let start = req.start.unwrap_or(true);
        // Held until the outcome is recorded: its disk from now on, its memory and vCPUs if it boots.
        let runs = |n: u64| if start { n } else { 0 };
        let _room = app.admit(Need { mem_mib: runs(spec.mem_mib.into()), vcpus: runs(spec.vcpus.into()), disk_gib: spec.disk_gib.into() })?;
        let id = new_id();
        let ws = app.runtime.create(&id, spec.clone())?;
        let now = unix_ms_now();
        let row = Row {
            id: id.clone(),
            name: spec.name.clone(),
            owner: app.owner.clone(),
            vcpu_count: spec.vcpus,
            mem_size_mib: spec.mem_mib,
            disk_size_gib: spec.disk_gib,
            smt_enabled: spec.smt,
            read_only,
            bandwidth: req.bandwidth.or(default_bandwidth(d)),
            recipe,
            state: "stopped".into(),
            address: None,
            slot: None,
            egress: egress.map_or("nat", |e| crate::network::to_api(e).as_str()).into(),
            created_ms: now,
            started_ms: None,
            stopped_ms: None,
            crash: None,
        };
        let row = match app.store.insert(&row, app.network.as_ref().map(|n| n.range()), now) {
            Ok(row) => row,
            Err(e) => {
                let _ = ws.delete();
                return Err(e.into());
            }
        };
        // No row without its network, no network without its row.
        if let (Some(net), Some(slot), Some(egress)) = (&app.network, row.slot, egress) {
            if let Err(e) = attach_network(net, &ws, &row, slot, egress) {
                let _ = app.store.delete(&id);
                let _ = ws.delete();
                return Err(e);
            }
        }
        if start {
            start_locked(&app, &ws)?;
        }
        Ok(app.store.get(&id)?.unwrap_or(row))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(to_api(&row))))
}

/// The configured bandwidth of a create without its own (none when both are unlimited).
fn default_bandwidth(d: &crate::config::Defaults) -> Option<hearth_proto::api::Bandwidth> {
    (d.rx_mbps > 0 || d.tx_mbps > 0).then_some(hearth_proto::api::Bandwidth { rx_mbps: d.rx_mbps, tx_mbps: d.tx_mbps })
}

/// Makes `ws`'s network and hands the runtime its spec; on failure nothing of it is left.
fn attach_network(net: &crate::network::Net, ws: &hearth_runtime::Workstation, row: &Row, slot: u32, egress: hearth_net::Egress) -> Result<(), ApiError> {
    net.setup(ws.id(), slot, egress, ws.jail_uid()?)?;
    let bw = row.bandwidth.map_or((0, 0), |b| (b.rx_mbps, b.tx_mbps));
    let handed = net.spec(ws.id(), slot, bw).map_err(ApiError::from).and_then(|spec| Ok(ws.set_network(Some(&spec))?));
    if handed.is_err() {
        let _ = net.teardown(ws.id());
    }
    handed
}

/// Boots `ws` and records the outcome either way.
fn start_locked(app: &crate::app::App, ws: &hearth_runtime::Workstation) -> Result<(), ApiError> {
    match ws.start() {
        Ok(t) => app.record_started(ws, &format!("agent ready {:.0} ms after InstanceStart", t.instance_start_to_ready_ms)),
        Err(e) => {
            let err = ApiError::from(e);
            // A refused start (already running) changed nothing; a failed boot is history.
            if err.status != StatusCode::CONFLICT {
                let _ = app.store.event(ws.id(), "start_failed", &err.message, unix_ms_now());
            }
            Err(err)
        }
    }
}

/// Lists workstations.
#[utoipa::path(get, path = "/api/v1/workstations", responses((status = 200, body = WorkstationList)))]
pub async fn list(State(app): State<SharedApp>) -> Result<Json<WorkstationList>, ApiError> {
    // The store is the state: exits are recorded as they happen (crate::exits).
    let rows = blocking(move || Ok(app.store.list()?)).await?;
    Ok(Json(WorkstationList { workstations: rows.iter().map(to_api).collect() }))
}

pub(crate) fn row_of(app: &crate::app::App, id: &str) -> Result<Row, ApiError> {
    app.refresh(app.row(id)?)
}

/// One workstation.
#[utoipa::path(get, path = "/api/v1/workstations/{id}", params(("id" = String, Path)), responses((status = 200, body = Workstation), (status = 404, body = ErrorBody)))]
pub async fn get(State(app): State<SharedApp>, Path(id): Path<String>) -> Result<Json<Workstation>, ApiError> {
    let row = blocking(move || row_of(&app, &id)).await?;
    Ok(Json(to_api(&row)))
}

/// Deletes a workstation: its VM, disk, logs, network and record.
#[utoipa::path(delete, path = "/api/v1/workstations/{id}", params(("id" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(State(app): State<SharedApp>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    blocking(move || {
        let row = row_of(&app, &id)?;
        match app.runtime.get(&id).and_then(|ws| ws.delete()) {
            // NotFound: its directory was gone already, or a delete beside this one took it.
            Ok(()) | Err(hearth_runtime::RuntimeError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        // After the VM is gone (it holds its namespace while it runs). If this fails the
        // row stays, so a retried delete (or the next start's reconciliation) finishes it.
        if let (Some(net), Some(_)) = (&app.network, row.slot) {
            net.teardown(&id)?;
        }
        app.store.delete(&id)?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A lifecycle action: `start`, `stop`, `restart`, `pause` or `resume`.
#[utoipa::path(post, path = "/api/v1/workstations/{id}/{action}",
    params(("id" = String, Path), ("action" = String, Path, description = "start, stop, restart, pause or resume")),
    responses((status = 200, body = Workstation), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn action(State(app): State<SharedApp>, Path((id, action)): Path<(String, String)>) -> Result<Json<Workstation>, ApiError> {
    let row = blocking(move || {
        let row = row_of(&app, &id)?;
        let ws = app.runtime.get(&id)?;
        let now = unix_ms_now();
        match action.as_str() {
            "start" => {
                let _room = app.admit(run_need(&row))?;
                start_locked(&app, &ws)?;
            }
            "stop" => {
                let kind = ws.stop()?;
                app.store.set_state(&id, "stopped", StateTimes { started_ms: None, stopped_ms: Some(now) }, None, ("stopped", kind.as_str()), now)?;
            }
            "restart" => {
                ws.stop()?;
                app.store.set_state(&id, "stopped", StateTimes { started_ms: None, stopped_ms: Some(now) }, None, ("stopped", "restart"), now)?;
                let _room = app.admit(run_need(&row))?;
                start_locked(&app, &ws)?;
            }
            "pause" => {
                ws.pause()?;
                app.store.set_state(&id, &WsState::Paused.to_string(), StateTimes::default(), None, ("paused", ""), now)?;
            }
            "resume" => {
                ws.resume()?;
                app.store.set_state(&id, &WsState::Running.to_string(), StateTimes::default(), None, ("resumed", ""), now)?;
            }
            other => return Err(ApiError::not_found(format!("no action `{other}` (start, stop, restart, pause, resume)"))),
        }
        row_of(&app, &id)
    })
    .await?;
    Ok(Json(to_api(&row)))
}

/// Runs a command to its end and returns its output.
#[utoipa::path(post, path = "/api/v1/workstations/{id}/exec", params(("id" = String, Path)), request_body = ExecRequest,
    responses((status = 200, body = ExecResult), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn exec(State(app): State<SharedApp>, Path(id): Path<String>, ApiJson(req): ApiJson<ExecRequest>) -> Result<Json<ExecResult>, ApiError> {
    let l = &app.config.limits;
    let timeout = req.timeout_secs.unwrap_or(app.config.defaults.exec_timeout_secs);
    if timeout == 0 || timeout > l.max_exec_timeout_secs {
        return Err(ApiError::invalid("timeout_secs", format!("must be 1-{}", l.max_exec_timeout_secs)));
    }
    let spec = ExecSpec {
        argv: req.argv,
        env: req.env,
        cwd: req.cwd,
        user: Some(req.user.unwrap_or_else(|| app.config.defaults.user.clone())),
        timeout_secs: Some(timeout),
        max_output_bytes: Some(l.max_exec_output_bytes),
        stdin: false,
    };
    spec.validate().map_err(|m| ApiError::invalid("argv", m))?;
    let stdin = req.stdin;
    let result = blocking(move || {
        let agent = app.agent(&id)?;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let exit = match stdin {
            Some(s) => agent.exec_io(spec, Some(Box::new(std::io::Cursor::new(s.into_bytes()))), &mut out, &mut err),
            None => agent.exec(spec, &mut out, &mut err),
        };
        let exit = exit.map_err(|e| match e {
            hearth_exec::ExecError::Refused { message, .. } => ApiError::invalid("argv", message),
            e => ApiError::internal(format!("the workstation's agent: {e}")),
        })?;
        Ok(ExecResult {
            exit_code: exit.code,
            signal: exit.signal,
            timed_out: exit.timed_out,
            truncated: exit.truncated,
            stdout: String::from_utf8_lossy(&out).into_owned(),
            stderr: String::from_utf8_lossy(&err).into_owned(),
        })
    })
    .await?;
    Ok(Json(result))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct EventsQuery {
    /// The newest this many (default 100, at most 1000).
    pub limit: Option<i64>,
}

/// What happened to a workstation, oldest first.
#[utoipa::path(get, path = "/api/v1/workstations/{id}/events", params(("id" = String, Path), EventsQuery),
    responses((status = 200, body = EventList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn events(State(app): State<SharedApp>, Path(id): Path<String>, Query(q): Query<EventsQuery>) -> Result<Json<EventList>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=crate::store::MAX_EVENTS_PER_WORKSTATION).contains(&limit) {
        return Err(ApiError::invalid("limit", format!("must be 1-{}", crate::store::MAX_EVENTS_PER_WORKSTATION)));
    }
    let events = blocking(move || {
        row_of(&app, &id)?;
        Ok(app.store.events(&id, limit)?)
    })
    .await?;
    Ok(Json(EventList { events }))
}
