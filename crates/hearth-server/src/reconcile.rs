//! At start, the database and the workstation directories are brought into agreement: every
//! row gets its live state (a VM that died while the server was down becomes crashed), and
//! directories no row knows (a create interrupted between the two) are removed, logged.
//! Then networks: every row holding a slot gets its network (set up again when missing,
//! as after a host reboot, when /run/netns starts empty) and its runtime network spec
//! rewritten from the current config; hearth-owned networks no row claims are torn down,
//! logged.

use std::collections::BTreeSet;

use crate::app::App;
use crate::network::{stored_egress, Net};
use crate::store::Row;

/// What reconciliation found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub rows: usize,
    pub running: usize,
    pub orphans_removed: Vec<String>,
    /// Workstations whose network was missing and was set up again.
    pub networks_set_up: Vec<String>,
    /// Networks no row claimed, torn down.
    pub networks_removed: Vec<String>,
}

pub fn reconcile(app: &App) -> Result<Report, crate::api::error::ApiError> {
    let mut report = Report::default();
    let rows = app.store.list()?;
    let known: std::collections::HashSet<String> = rows.iter().map(|r| r.id.clone()).collect();
    if let Some(net) = &app.network {
        networks(app, net, &rows, &mut report)?;
    }
    for row in rows {
        let (row, ws) = app.refreshed(row)?;
        report.rows += 1;
        if row.state == "running" || row.state == "paused" {
            report.running += 1;
            if let Some(ws) = ws {
                app.exits.watch(&ws);
            }
        }
    }
    for id in app.runtime.ids()? {
        if !known.contains(&id) {
            tracing::warn!(workstation = %id, "removing a workstation directory no record knows");
            if let Ok(ws) = app.runtime.get(&id) {
                ws.delete()?;
            }
            report.orphans_removed.push(id);
        }
    }
    Ok(report)
}

/// Networks ↔ rows (see the module docs). One workstation's failure is logged and
/// recorded as its event; the others go on.
fn networks(app: &App, net: &Net, rows: &[Row], report: &mut Report) -> Result<(), crate::api::error::ApiError> {
    let inv = net.list()?;
    let mut claimed = BTreeSet::new();
    for row in rows {
        let Some(slot) = row.slot else { continue };
        claimed.insert(row.id.clone());
        // A row without its directory (lost) can never run: its network is left as it is.
        let Ok(ws) = app.runtime.get(&row.id) else { continue };
        let done = ws.jail_uid().map_err(crate::api::error::ApiError::from).and_then(|uid| {
            let made = net.ensure(&row.id, slot, stored_egress(&row.egress), uid, &inv)?;
            let bw = row.bandwidth.map_or((0, 0), |b| (b.rx_mbps, b.tx_mbps));
            ws.set_network(Some(&net.spec(&row.id, slot, bw)?))?;
            Ok(made)
        });
        match done {
            Ok(true) => {
                tracing::info!(workstation = %row.id, "its network was missing: set up again");
                report.networks_set_up.push(row.id.clone());
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(workstation = %row.id, "reconciling its network: {}", e.message);
                let _ = app.store.event(&row.id, "network_failed", &e.message, hearth_proto::unix_ms_now());
            }
        }
    }
    report.networks_removed = net.remove_unknown(&inv, &claimed);
    Ok(())
}

/// Boots the workstations a previous server suspended (marked `resume`).
pub fn resume_suspended(app: &App) {
    let ids = match app.store.to_resume() {
        Ok(ids) => ids,
        Err(e) => return tracing::warn!("listing workstations to resume: {e}"),
    };
    for id in ids {
        let _ = app.store.set_resume(&id, false);
        let started = app.runtime.get(&id).map_err(crate::api::error::ApiError::from).and_then(|ws| {
            let t = ws.start()?;
            app.record_started(&ws, &format!("resumed after its host restarted; agent ready {:.0} ms after InstanceStart", t.instance_start_to_ready_ms))
        });
        if let Err(e) = started {
            tracing::warn!(workstation = %id, "resuming: {}", e.message);
            let _ = app.store.event(&id, "start_failed", &format!("resuming after a restart: {}", e.message), hearth_proto::unix_ms_now());
        }
    }
}

/// Stops every running or paused workstation cleanly and marks it to be booted again at the
/// next start: its host (the box) is going down.
pub fn suspend_running(app: &App) {
    let rows = match app.store.list() {
        Ok(r) => r,
        Err(e) => return tracing::warn!("listing workstations to suspend: {e}"),
    };
    for row in rows.into_iter().filter(|r| r.state == "running" || r.state == "paused") {
        let Ok(ws) = app.runtime.get(&row.id) else { continue };
        match ws.stop() {
            Ok(kind) => {
                let now = hearth_proto::unix_ms_now();
                let msg = format!("suspended while its host shuts down ({kind:?}); it boots again with the server");
                let _ = app.store.set_state(&row.id, "stopped", crate::store::StateTimes { started_ms: None, stopped_ms: Some(now) }, None, ("stopped", &msg), now);
                let _ = app.store.set_resume(&row.id, true);
            }
            Err(e) => tracing::warn!(workstation = %row.id, "suspending: {e}"),
        }
    }
}
