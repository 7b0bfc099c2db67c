//! At start, the database and the workstation directories are brought into agreement: every
//! row gets its live state (a VM that died while the server was down becomes crashed), and
//! directories no row knows (a create interrupted between the two) are removed, logged.
//! Then networks: every row holding a slot gets its network (set up again when missing,
//! as after a host reboot, when /run/netns starts empty) and its runtime network spec
//! rewritten from the current config; hearth-owned networks no row claims are torn down,
//! logged.
//!
//! While the server runs, the exits its watches see ([`crate::exits`]) are recorded the same
//! way, one workstation at a time.
//!
//! Around a restart of the box (whose VMs go down with it), running workstations are
//! hibernated: the next server wakes each where it was when it is next used. One that
//! cannot be hibernated is stopped cleanly and marked; the next start boots it again,
//! through admission like any other start.

use std::collections::BTreeSet;

use hearth_proto::api::WorkstationState;
use hearth_proto::unix_ms_now;

use crate::error::Error;
use crate::network::{from_api, Net};
use crate::store::{Row, Transition};
use crate::{run_need, Service};

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

impl Service {
    /// Brings the records and the host into agreement (see the module docs) and watches the
    /// VMMs found running. Blocks.
    pub fn reconcile(&self) -> Result<Report, Error> {
        let mut report = Report::default();
        let rows = self.store.list()?;
        let known: std::collections::HashSet<String> = rows.iter().map(|r| r.id.clone()).collect();
        if let Some(net) = &self.network {
            self.networks(net, &rows, &mut report)?;
        }
        for row in rows {
            let stored = row.state;
            let row = self.refresh(row)?;
            if row.state == WorkstationState::Hibernated && stored != WorkstationState::Hibernated {
                // The last server ended between writing its snapshot and recording it.
                self.store.record(&row.id, Transition::Hibernated { why: "found hibernated at start (the last server ended as it hibernated)" }, unix_ms_now())?;
            }
            report.rows += 1;
            if row.state.holds_vm() {
                report.running += 1;
                self.exits.watch(self.backend.as_ref(), &row.id);
            }
        }
        for id in self.backend.ids()? {
            if !known.contains(&id) {
                tracing::warn!(workstation = %id, "removing a workstation directory no record knows");
                match self.backend.delete(&id) {
                    Ok(()) | Err(hearth_runtime::RuntimeError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
                report.orphans_removed.push(id);
            }
        }
        Ok(report)
    }

    /// Networks ↔ rows (see the module docs). One workstation's failure is logged and
    /// recorded as its event; the others go on.
    fn networks(&self, net: &Net, rows: &[Row], report: &mut Report) -> Result<(), Error> {
        let inv = net.list()?;
        let mut claimed = BTreeSet::new();
        for row in rows {
            let Some(slot) = row.slot else { continue };
            claimed.insert(row.id.clone());
            // A row without its directory (lost) can never run: its network is left as it is.
            let Ok(uid) = self.backend.jail_uid(&row.id) else { continue };
            let done = (|| -> Result<bool, Error> {
                let made = net.ensure(&row.id, slot, from_api(row.egress), uid, &inv)?;
                let bw = row.bandwidth.map_or((0, 0), |b| (b.rx_mbps, b.tx_mbps));
                self.backend.set_network(&row.id, Some(&net.spec(&row.id, slot, bw)?))?;
                Ok(made)
            })();
            match done {
                Ok(true) => {
                    tracing::info!(workstation = %row.id, "its network was missing: set up again");
                    report.networks_set_up.push(row.id.clone());
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(workstation = %row.id, "reconciling its network: {e}");
                    let _ = self.store.event(&row.id, "network_failed", &e.to_string(), unix_ms_now());
                }
            }
        }
        report.networks_removed = net.remove_unknown(&inv, &claimed);
        Ok(())
    }

    /// Records the exits of the VMMs the service watches as they come ([`crate::exits`]), for
    /// the server's life: each one's record brought up to date (a crash recorded).
    pub async fn record_exits(self: std::sync::Arc<Self>) {
        let Some(mut exits) = self.exits.take() else { return };
        while let Some(id) = exits.recv().await {
            let seen = self
                .run(move |s| match s.store.get(&id)? {
                    Some(row) => s.refresh(row).map(|r| Some((id, r.state))),
                    // Deleted meanwhile.
                    None => Ok(None),
                })
                .await;
            match seen {
                Ok(Some((id, state))) => tracing::info!(workstation = %id, %state, "its Firecracker exited"),
                Ok(None) => {}
                Err(e) => tracing::warn!("recording a Firecracker's exit: {e}"),
            }
        }
    }

    /// Boots the workstations a previous server suspended (marked `resume`), each admitted
    /// against the budgets like any start: one that does not fit stays stopped, with a
    /// `start_failed` event saying why. Blocks.
    pub fn resume_suspended(&self) {
        let ids = match self.store.to_resume() {
            Ok(ids) => ids,
            Err(e) => return tracing::warn!("listing workstations to resume: {e}"),
        };
        for id in ids {
            let _ = self.store.set_resume(&id, false);
            let booted = self.store.get(&id).map_err(Error::from).and_then(|row| {
                let Some(row) = row else { return Ok(()) };
                let _room = self.admit(&id, run_need(&row))?;
                self.boot(&id, "resumed after its host restarted; ")
            });
            if let Err(e) = booted {
                tracing::warn!(workstation = %id, "resuming: {e}");
                // A failed boot recorded its own event; a refusal is recorded here.
                if matches!(e, Error::Unavailable { .. }) {
                    let _ = self.store.event(&id, "start_failed", &format!("resuming after a restart: {e}"), unix_ms_now());
                }
            }
        }
    }

    /// Hibernates every running or paused workstation: its host (the box) is going down,
    /// and the next server wakes each where it was on first use. One that cannot be
    /// hibernated is stopped cleanly and marked to boot again at the next start. Blocks.
    pub fn suspend_running(&self) {
        let rows = match self.store.list() {
            Ok(r) => r,
            Err(e) => return tracing::warn!("listing workstations to suspend: {e}"),
        };
        for row in rows.into_iter().filter(|r| r.state.holds_vm()) {
            match self.hibernate_now(&row.id, "its host shut down; it wakes where it was when next used") {
                Ok(_recorded) => continue,
                Err(e) => {
                    tracing::warn!(workstation = %row.id, "hibernating: {e}; stopping it instead");
                    let _ = self.store.event(&row.id, "hibernate_failed", &e.to_string(), unix_ms_now());
                }
            }
            match self.backend.stop(&row.id) {
                Ok(kind) => {
                    let msg = format!("suspended while its host shuts down ({kind:?}); it boots again with the server");
                    let _ = self.store.record(&row.id, Transition::Stopped { why: &msg }, unix_ms_now());
                    let _ = self.store.set_resume(&row.id, true);
                }
                Err(e) => tracing::warn!(workstation = %row.id, "suspending: {e}"),
            }
        }
    }
}
