//! What the service measures for `GET /metrics` (OpenMetrics text, the crate
//! `prometheus-client`): how long the lifecycle takes, by path, counted as it happens; and,
//! read fresh at each scrape, workstations by state, the host's budgets and what is held of
//! them, and each running workstation's Firecracker memory and CPU.
//!
//! Must not: slow an operation (recording is an atomic add) or keep a series for a
//! workstation that no longer runs (those are read at the scrape, not kept).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::principal::Principal;
use crate::{Error, Need, Service};

/// How a workstation became ready to use.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathLabel {
    /// `cold` (a boot, at create or start), `wake` (from its snapshot), `wake_cold` (its
    /// snapshot did not load: booted instead).
    pub path: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabel {
    resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkstationLabel {
    workstation: String,
}

fn seconds() -> Histogram {
    // 50 ms to ~100 s: a wake on KVM to a busy box's cold boot.
    Histogram::new(exponential_buckets(0.05, 2.0, 12))
}

/// The lifecycle's timings, shared by every operation.
pub struct Metrics {
    ready: Family<PathLabel, Histogram>,
    hibernate: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics { ready: Family::new_with_constructor(seconds), hibernate: seconds() }
    }
}

impl Metrics {
    /// A workstation became ready by `path` (see [`PathLabel`]) in `secs`.
    pub fn ready(&self, path: &str, secs: f64) {
        self.ready.get_or_create(&PathLabel { path: path.into() }).observe(secs);
    }

    /// A hibernation took `secs`.
    pub fn hibernated(&self, secs: f64) {
        self.hibernate.observe(secs);
    }
}

impl Service {
    /// Registers everything the service measures in `reg`, the scrape-time readings taken now
    /// (administrators).
    pub async fn metrics(self: &std::sync::Arc<Self>, who: &Principal, reg: &mut Registry) -> Result<(), Error> {
        who.must_be_admin()?;
        let m = &self.metrics;
        reg.register("hearth_workstation_ready_seconds", "From asking for a workstation (create, start, a call that wakes it) to its agent answering, by path", m.ready.clone());
        reg.register("hearth_workstation_hibernate_seconds", "How long hibernating a workstation took (guest sync, snapshot written and synced)", m.hibernate.clone());
        let now = self
            .run(|s| {
                let (rows, used) = s.holdings()?;
                let usage: Vec<(String, Option<std::time::Duration>, Option<u64>)> =
                    rows.iter().filter(|r| r.state.holds_vm()).map(|r| (r.id.clone(), s.backend.cpu_time(&r.id), s.backend.rss_bytes(&r.id))).collect();
                Ok((rows, used, usage))
            })
            .await?;
        let (rows, used, usage) = now;
        let by_state = Family::<StateLabel, Gauge>::default();
        for st in hearth_proto::api::WorkstationState::ALL {
            by_state.get_or_create(&StateLabel { state: st.as_str().into() }).set(rows.iter().filter(|r| r.state == st).count() as i64);
        }
        reg.register("hearth_workstations", "Workstations by state", by_state);
        let resources = |n: Need| {
            let f = Family::<ResourceLabel, Gauge>::default();
            for (name, v) in [("memory_mib", n.mem_mib), ("vcpus", n.vcpus), ("disk_gib", n.disk_gib)] {
                f.get_or_create(&ResourceLabel { resource: name.into() }).set(i64::try_from(v).unwrap_or(i64::MAX));
            }
            f
        };
        reg.register("hearth_host_budget", "This host's budgets for workstations", resources(self.admission.budget));
        reg.register("hearth_host_in_use", "What workstations hold of the budgets (running and paused ones their memory and vCPUs, all their disks)", resources(used));
        let cpu = Family::<WorkstationLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let rss = Family::<WorkstationLabel, Gauge>::default();
        for (id, c, r) in usage {
            let label = WorkstationLabel { workstation: id };
            if let Some(c) = c {
                cpu.get_or_create(&label).set(c.as_secs_f64());
            }
            if let Some(r) = r {
                rss.get_or_create(&label).set(i64::try_from(r).unwrap_or(i64::MAX));
            }
        }
        reg.register("hearth_workstation_vmm_cpu_seconds", "CPU time a running workstation's Firecracker has used since it started", cpu);
        reg.register("hearth_workstation_vmm_rss_bytes", "Host memory a running workstation's Firecracker holds", rss);
        Ok(())
    }
}
