//! Workstations: create, list, get, delete, the lifecycle actions and events. Operations on
//! one workstation do not overlap: the backend holds its lock for each.

use std::sync::Arc;

use hearth_proto::api::{Bandwidth, CreateWorkstation, Event, Workstation, WorkstationState};
use hearth_proto::unix_ms_now;
use hearth_runtime::Spec;

use crate::cleanup::Cleanup;
use crate::error::Error;
use crate::network::{from_api, to_api};
use crate::principal::{Principal, Scope};
use crate::sharing::Level;
use crate::store::{Row, Transition, MAX_EVENTS_PER_WORKSTATION};
use crate::{random_hex, run_need, Need, Service};

/// A lifecycle action on a workstation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    Restart,
    Pause,
    Resume,
    Hibernate,
}

impl Action {
    pub const ALL: [Action; 6] = [Action::Start, Action::Stop, Action::Restart, Action::Pause, Action::Resume, Action::Hibernate];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Restart => "restart",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Hibernate => "hibernate",
        }
    }
}

impl std::str::FromStr for Action {
    type Err = Error;

    fn from_str(s: &str) -> Result<Action, Error> {
        Action::ALL.into_iter().find(|a| a.as_str() == s).ok_or_else(|| Error::NotFound(format!("no action `{s}` (start, stop, restart, pause, resume, hibernate)")))
    }
}

/// Events a caller may ask for at once: the default, and at most.
pub const DEFAULT_EVENTS: i64 = 100;
pub const MAX_EVENTS: i64 = MAX_EVENTS_PER_WORKSTATION;

/// A new workstation id: `w` and 12 random hex digits (the network derives interface names
/// from it, which bounds its length).
fn new_id() -> Result<String, Error> {
    Ok(format!("w{}", random_hex(6)?))
}

impl Service {
    /// Checks a create against the configured limits, naming the field at fault.
    fn validate(&self, req: &CreateWorkstation) -> Result<(), Error> {
        let l = &self.config.limits;
        let name_ok = !req.name.trim().is_empty() && req.name.chars().count() <= l.max_name_len && !req.name.chars().any(char::is_control);
        if !name_ok {
            return Err(Error::invalid("name", format!("must be 1-{} characters, not all blank, without control characters", l.max_name_len)));
        }
        if let Some(v) = req.vcpu_count {
            if v == 0 || v > l.max_vcpus {
                return Err(Error::invalid("vcpu_count", format!("must be 1-{}", l.max_vcpus)));
            }
        }
        if let Some(m) = req.mem_size_mib {
            if m < l.min_mem_mib || m > l.max_mem_mib {
                return Err(Error::invalid("mem_size_mib", format!("must be {}-{}", l.min_mem_mib, l.max_mem_mib)));
            }
        }
        if let Some(d) = req.disk_size_gib {
            if d == 0 || d > l.max_disk_gib {
                return Err(Error::invalid("disk_size_gib", format!("must be 1-{}", l.max_disk_gib)));
            }
        }
        if let Some(b) = req.bandwidth {
            for (field, v) in [("bandwidth.rx_mbps", b.rx_mbps), ("bandwidth.tx_mbps", b.tx_mbps)] {
                if v == 0 || v > l.max_bandwidth_mbps {
                    return Err(Error::invalid(field, format!("must be 1-{} Mbit/s", l.max_bandwidth_mbps)));
                }
            }
        }
        if let Some(recipe) = &req.recipe {
            let ok = !recipe.is_empty() && recipe.len() <= 64 && recipe.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(Error::invalid("recipe", "must be 1-64 characters of [A-Za-z0-9_-]"));
            }
        }
        if let Some(setup) = &req.setup {
            setup.check().map_err(|(field, message)| Error::invalid(field, message))?;
            if !setup.is_empty() && req.read_only == Some(true) {
                return Err(Error::invalid("setup", "a read-only workstation keeps nothing a setup would install"));
            }
        }
        Ok(())
    }

    /// Creates a workstation for `who` and, unless `start` is false, boots it.
    pub async fn create(self: &Arc<Self>, who: &Principal, req: CreateWorkstation) -> Result<Workstation, Error> {
        who.may(Scope::Write)?;
        self.validate(&req)?;
        let who = who.clone();
        self.run(move |s| s.create_now(&who, req)).await
    }

    /// The steps of a create, in order; each undone in reverse if a later one fails.
    fn create_now(&self, who: &Principal, req: CreateWorkstation) -> Result<Workstation, Error> {
        let d = &self.config.defaults;
        // 1. Everything checked before anything is made: a bad or unavailable egress, an
        // unbuilt recipe, no room change nothing.
        let egress = match (&self.network, req.egress) {
            (Some(net), asked) => Some(net.egress_for(asked)?),
            (None, Some(_)) => return Err(Error::invalid("egress", "this server has workstation networking turned off (network.enabled = false)")),
            (None, None) => None,
        };
        let recipe = req.recipe.clone().unwrap_or_else(|| d.recipe.clone());
        let base_image =
            self.backend.base_image(&recipe).ok_or_else(|| Error::invalid("recipe", format!("no image built for recipe `{recipe}` (hearth image build --recipe …)")))?;
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
        // The caller's quota, checked here for a refusal before anything is made, and again
        // with the record (creates at once).
        let quota = self.quota_of(who)?;
        let adds = hearth_proto::api::Usage { workstations: 1, vcpus: spec.vcpus.into(), mem_mib: spec.mem_mib.into(), disk_gib: spec.disk_gib.into(), execs: 0 };
        if let Some((limit, max, used)) = crate::store::over_quota(&quota, &self.store.usage(&who.user)?, &adds) {
            return Err(Error::QuotaExceeded { limit, message: crate::error::quota_message(limit, max, used) });
        }
        // 2. Room, held until the outcome is recorded: its disk from now on, its memory and
        // vCPUs if it boots.
        let runs = |n: u64| if start { n } else { 0 };
        let id = new_id()?;
        let _room = self.admit(&id, Need { mem_mib: runs(spec.mem_mib.into()), vcpus: runs(spec.vcpus.into()), disk_gib: spec.disk_gib.into() })?;
        let mut undo = Cleanup::new("create");
        // 3. Its directory and own disk.
        self.backend.create(&id, spec.clone())?;
        undo.push("workstation directory", || self.backend.delete(&id));
        // 4. Its record, with its address slot (and the server's limit on how many exist)
        // taken in the same transaction.
        let now = unix_ms_now();
        let row = Row {
            id: id.clone(),
            name: spec.name.clone(),
            owner: who.user.clone(),
            vcpu_count: spec.vcpus,
            mem_size_mib: spec.mem_mib,
            disk_size_gib: spec.disk_gib,
            smt_enabled: spec.smt,
            read_only,
            bandwidth: req.bandwidth.or(default_bandwidth(d)),
            recipe,
            state: WorkstationState::Stopped,
            address: None,
            slot: None,
            egress: egress.map_or(hearth_proto::api::Egress::Nat, to_api),
            created_ms: now,
            started_ms: None,
            stopped_ms: None,
            crash: None,
        };
        let row = self.store.insert(&row, self.config.limits.max_workstations, &quota, self.network.as_ref().map(|n| n.range()), now)?;
        undo.push("record", || self.store.delete(&id).map(drop));
        if let Some(setup) = req.setup.as_ref().filter(|s| !s.is_empty()) {
            self.store.set_setup(&id, setup)?;
        }
        // 5. Its network, and the VM's spec of it.
        if let (Some(net), Some(slot)) = (&self.network, row.slot) {
            net.setup(&id, slot, from_api(row.egress), self.backend.jail_uid(&id)?)?;
            undo.push("network", || net.teardown(&id));
            let bw = row.bandwidth.map_or((0, 0), |b| (b.rx_mbps, b.tx_mbps));
            self.backend.set_network(&id, Some(&net.spec(&id, slot, bw)?))?;
        }
        // Made: a boot that fails from here leaves a stopped workstation with its event.
        undo.dismiss();
        let size = if read_only { "read-only".to_string() } else { format!("{} GiB", spec.disk_gib) };
        self.audit(&who.user, "create", &id, &format!("{} ({} vCPU, {} MiB, {size})", spec.name, spec.vcpus, spec.mem_mib));
        if start {
            self.boot(&id, "")?;
        }
        Ok(Workstation::from(&self.store.get(&id)?.unwrap_or(row)))
    }

    /// The workstations `who` may see (an admin: all; a user: their own and those shared
    /// with them), oldest first. The store is the state:
    /// exits are recorded as they happen ([`crate::exits`]).
    pub async fn list(self: &Arc<Self>, who: &Principal) -> Result<Vec<Workstation>, Error> {
        let who = who.clone();
        self.run(move |s| {
            let mut rows = if who.is_admin() { s.store.list()? } else { s.store.list_owned(&who.user)? };
            if !who.is_admin() {
                // And those shared with them.
                for id in s.store.shared_with(&who.user)? {
                    rows.extend(s.store.get(&id)?);
                }
                rows.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
            }
            rows.iter().map(|r| s.as_seen_by(&who, r)).collect()
        })
        .await
    }

    /// One workstation, its state as its VM has it now.
    pub async fn get(self: &Arc<Self>, who: &Principal, id: &str) -> Result<Workstation, Error> {
        let (who, id) = (who.clone(), id.to_string());
        self.run(move |s| {
            let row = s.current(&who, &id, Level::View)?;
            let mut w = s.as_seen_by(&who, &row)?;
            if row.state.holds_vm() {
                w.vmm_rss_mib = s.backend.rss_bytes(&id).map(|b| b >> 20);
            }
            Ok(w)
        })
        .await
    }

    /// Deletes a workstation: its VM, disk, logs, network and record.
    pub async fn delete(self: &Arc<Self>, who: &Principal, id: &str) -> Result<(), Error> {
        who.may(Scope::Write)?;
        let (who, id) = (who.clone(), id.to_string());
        self.run(move |s| {
            let row = s.visible_as(&who, &id, Level::Own)?;
            match s.backend.delete(&id) {
                // NotFound: its directory was gone already, or a delete beside this one took it.
                Ok(()) | Err(hearth_runtime::RuntimeError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
            // After the VM is gone (it holds its namespace while it runs). If this fails the
            // row stays, so a retried delete (or the next start's reconciliation) finishes it.
            if let (Some(net), Some(_)) = (&s.network, row.slot) {
                net.teardown(&id)?;
            }
            s.store.delete(&id)?;
            s.audit(&who.user, "delete", &id, &row.name);
            Ok(())
        })
        .await
    }

    /// Starts, stops, restarts, pauses or resumes a workstation; returns it as it is after.
    pub async fn act(self: &Arc<Self>, who: &Principal, id: &str, action: Action) -> Result<Workstation, Error> {
        who.may(Scope::Write)?;
        let (who, id) = (who.clone(), id.to_string());
        self.run(move |s| {
            let row = s.current(&who, &id, Level::Use)?;
            let now = unix_ms_now();
            match action {
                // Start or resume a hibernated one: where it was, not a fresh boot.
                Action::Start | Action::Resume if row.state == WorkstationState::Hibernated => s.wake_if_hibernated(&row, action.as_str())?,
                Action::Start => {
                    let _room = s.admit(&id, run_need(&row))?;
                    s.boot(&id, "")?;
                }
                Action::Stop => {
                    let kind = s.backend.stop(&id)?;
                    s.store.record(&id, Transition::Stopped { why: kind.as_str() }, now)?;
                }
                Action::Restart => {
                    // Admitted before it stops (its own VM's share is the reservation's from
                    // here): a restart refused for room leaves it running.
                    let _room = s.admit(&id, run_need(&row))?;
                    s.backend.stop(&id)?;
                    s.store.record(&id, Transition::Stopped { why: "restart" }, now)?;
                    s.boot(&id, "")?;
                }
                Action::Pause => {
                    s.backend.pause(&id)?;
                    s.store.record(&id, Transition::Paused, now)?;
                }
                Action::Resume => {
                    s.backend.resume(&id)?;
                    s.store.record(&id, Transition::Resumed, now)?;
                }
                Action::Hibernate => s.hibernate_now(&id, "asked")??,
            }
            s.audit(&who.user, action.as_str(), &id, "");
            Ok(Workstation::from(&s.current(&who, &id, Level::Use)?))
        })
        .await
    }

    /// Follows the list of workstations `who` sees: the list now, then again after every
    /// change to it, until the server stops. At most `limits.max_list_followers` at once.
    pub async fn follow_list(self: &Arc<Self>, who: &Principal) -> Result<ListFollow, Error> {
        let permit = self.list_followers.clone().try_acquire_owned().map_err(|_| Error::Unavailable {
            what: crate::Unavailable::Followers,
            message: format!("at most {} live workstation lists at once", self.config.limits.max_list_followers),
        })?;
        Ok(ListFollow { svc: self.clone(), who: who.clone(), changes: self.store.changes(), stopping: self.stopping(), first: true, ended: false, _permit: permit })
    }

    /// What happened to a workstation, oldest first: the newest `limit` events (default
    /// [`DEFAULT_EVENTS`], 1 to [`MAX_EVENTS`]).
    pub async fn events(self: &Arc<Self>, who: &Principal, id: &str, limit: Option<i64>) -> Result<Vec<Event>, Error> {
        let limit = limit.unwrap_or(DEFAULT_EVENTS);
        if !(1..=MAX_EVENTS).contains(&limit) {
            return Err(Error::invalid("limit", format!("must be 1-{MAX_EVENTS}")));
        }
        let (who, id) = (who.clone(), id.to_string());
        self.run(move |s| {
            s.current(&who, &id, Level::View)?;
            Ok(s.store.events(&id, limit)?)
        })
        .await
    }
}

/// The configured bandwidth of a create without its own (none when both are unlimited).
fn default_bandwidth(d: &crate::config::Defaults) -> Option<Bandwidth> {
    (d.rx_mbps > 0 || d.tx_mbps > 0).then_some(Bandwidth { rx_mbps: d.rx_mbps, tx_mbps: d.tx_mbps })
}

impl Service {
    /// `row` as `who` sees it: with their role when it is shared with them.
    fn as_seen_by(&self, who: &Principal, row: &Row) -> Result<Workstation, Error> {
        let mut w = Workstation::from(row);
        if row.owner != who.user && !who.is_admin() {
            w.shared_as = self.store.share_of(&row.id, &who.user)?;
        }
        Ok(w)
    }
}

/// How long a live list waits after a change for the rest of its burst (a create records a
/// row, then its boot, within milliseconds): one list sent for all of them.
const LIST_SETTLE: std::time::Duration = std::time::Duration::from_millis(100);

/// What a live list yields.
#[derive(Debug)]
pub enum ListItem {
    /// The whole list, as [`Service::list`] would answer now.
    Workstations(Vec<Workstation>),
    /// The server is stopping (follow again from the next one); nothing follows.
    Stopping,
}

/// A live list of the workstations one caller sees ([`Service::follow_list`]). Sends whole
/// lists, not differences: a client that missed one loses nothing by the next.
pub struct ListFollow {
    svc: Arc<Service>,
    who: Principal,
    changes: tokio::sync::watch::Receiver<u64>,
    stopping: tokio::sync::watch::Receiver<bool>,
    first: bool,
    ended: bool,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl ListFollow {
    /// The next list (at once the first time, then after the next change), or the end
    /// (once; after it, None).
    pub async fn next(&mut self) -> Option<ListItem> {
        if self.ended {
            return None;
        }
        if !std::mem::take(&mut self.first) {
            tokio::select! {
                r = self.changes.changed() => r.ok()?,
                _ = self.stopping.wait_for(|stopping| *stopping) => {}
            }
            tokio::time::sleep(LIST_SETTLE).await;
        }
        if *self.stopping.borrow() {
            self.ended = true;
            return Some(ListItem::Stopping);
        }
        // What changed during the settle is in the list read now.
        self.changes.borrow_and_update();
        match self.svc.list(&self.who).await {
            Ok(list) => Some(ListItem::Workstations(list)),
            Err(e) => {
                tracing::warn!(error = %e, "a live workstation list could not be read; it ends");
                None
            }
        }
    }
}
