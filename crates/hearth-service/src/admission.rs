//! Admission: what this host may take on. Running (and paused) workstations count against a
//! memory and a vCPU budget, every workstation's own disk against a disk budget. A create or
//! start over budget is refused with the reason ([`Error::Unavailable`]), never attempted.
//!
//! Checks and the operations they admit are not atomic (a boot takes seconds), so an admitted
//! operation holds a [`Reservation`] until its outcome is in the store: two creates racing for
//! the last room cannot both get it. The store is read while the reservations' lock is held:
//! an operation that finishes records its outcome, then gives its reservation back (under
//! that lock), so a check sees it in one place or the other, never in neither.

use std::sync::Mutex;

use crate::error::{Error, Unavailable};
use crate::store::Row;

/// What a workstation needs of the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Need {
    /// Memory and vCPUs, while it runs.
    pub mem_mib: u64,
    pub vcpus: u64,
    /// Its own disk, for as long as it exists.
    pub disk_gib: u64,
}

impl Need {
    fn add(self, o: Need) -> Need {
        Need { mem_mib: self.mem_mib + o.mem_mib, vcpus: self.vcpus + o.vcpus, disk_gib: self.disk_gib + o.disk_gib }
    }

    fn sub(self, o: Need) -> Need {
        Need { mem_mib: self.mem_mib - o.mem_mib, vcpus: self.vcpus - o.vcpus, disk_gib: self.disk_gib - o.disk_gib }
    }

    /// What the records hold now: running and paused ones their memory and vCPUs, all their disks.
    fn in_use(rows: &[Row]) -> Need {
        rows.iter().fold(Need::default(), |n, r| {
            let runs = r.state.holds_vm();
            n.add(Need { mem_mib: if runs { r.mem_size_mib.into() } else { 0 }, vcpus: if runs { r.vcpu_count.into() } else { 0 }, disk_gib: r.disk_size_gib.into() })
        })
    }
}

/// The host's budgets and what admitted operations hold of them.
#[derive(Debug)]
pub struct Admission {
    pub budget: Need,
    reserved: Mutex<Need>,
}

/// Room held for an operation in flight; given back when dropped.
#[must_use]
pub struct Reservation<'a> {
    admission: &'a Admission,
    need: Need,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut r = self.admission.reserved.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *r = r.sub(self.need);
    }
}

impl Admission {
    pub fn new(budget: Need) -> Admission {
        Admission { budget, reserved: Mutex::new(Need::default()) }
    }

    /// Reserves `need` if it fits beside what the records hold (`rows`, read under this
    /// check's lock; workstation `except` left out: a restart's own VM is about to go) and
    /// what other operations have reserved.
    pub fn admit<E: Into<Error>>(&self, rows: impl FnOnce() -> Result<Vec<Row>, E>, except: Option<&str>, need: Need) -> Result<Reservation<'_>, Error> {
        let mut reserved = self.reserved.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let rows = rows().map_err(Into::into)?;
        let counted: Vec<Row> = rows.into_iter().filter(|r| Some(r.id.as_str()) != except).collect();
        let used = Need::in_use(&counted).add(*reserved);
        let b = self.budget;
        let over = |what: Unavailable, name: &str, asked: u64, used: u64, budget: u64, unit: &str| {
            let message = format!("{asked} {unit} more would exceed this host's workstation {name} budget ({used} of {budget} {unit} in use)");
            Err(Error::Unavailable { what, message })
        };
        if used.mem_mib + need.mem_mib > b.mem_mib {
            return over(Unavailable::Memory, "memory", need.mem_mib, used.mem_mib, b.mem_mib, "MiB");
        }
        if used.vcpus + need.vcpus > b.vcpus {
            return over(Unavailable::Vcpus, "vCPU", need.vcpus, used.vcpus, b.vcpus, "vCPUs");
        }
        if used.disk_gib + need.disk_gib > b.disk_gib {
            return over(Unavailable::Disk, "disk", need.disk_gib, used.disk_gib, b.disk_gib, "GiB");
        }
        *reserved = reserved.add(need);
        Ok(Reservation { admission: self, need })
    }
}

/// Budgets the config leaves at 0, from this host: half its memory, four vCPUs per core (idle
/// shells use little CPU), the size of the filesystem holding the data directory (own disks
/// are sparse, but a quota given is a quota kept: no overcommit).
pub fn host_defaults(data_dir: &std::path::Path) -> Need {
    let total_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find(|l| l.starts_with("MemTotal:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()))
        .unwrap_or(0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let disk_gib = nix::sys::statvfs::statvfs(data_dir).map_or(0, |s| (s.blocks() * s.fragment_size()) >> 30);
    Need { mem_mib: total_kib / 1024 / 2, vcpus: 4 * cores, disk_gib }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_proto::api::Egress;
    use hearth_proto::api::WorkstationState::{self, Running, Stopped};

    fn row(id: &str, state: WorkstationState, mem: u32, vcpus: u8, disk: u32) -> Row {
        Row {
            id: id.into(),
            name: "n".into(),
            owner: "o".into(),
            vcpu_count: vcpus,
            mem_size_mib: mem,
            disk_size_gib: disk,
            smt_enabled: false,
            read_only: false,
            bandwidth: None,
            recipe: "r".into(),
            state,
            address: None,
            slot: None,
            egress: Egress::Nat,
            created_ms: 0,
            started_ms: None,
            stopped_ms: None,
            crash: None,
        }
    }

    #[test]
    fn each_budget_refuses_with_its_reason() {
        let a = Admission::new(Need { mem_mib: 4096, vcpus: 4, disk_gib: 10 });
        let rows = || Ok::<_, Error>(vec![row("a", Running, 2048, 2, 4), row("b", Stopped, 8192, 8, 4)]);
        let need = |m, v, d| Need { mem_mib: m, vcpus: v, disk_gib: d };
        assert!(a.admit(rows, None, need(2048, 2, 2)).is_ok());
        let msg = |n| match a.admit(rows, None, n).err().unwrap() {
            Error::Unavailable { what, message } => (what, message),
            other => panic!("{other:?}"),
        };
        assert!(msg(need(4096, 1, 0)).1.contains("memory budget (2048 of 4096 MiB"));
        assert_eq!(msg(need(1, 3, 0)).0, Unavailable::Vcpus);
        assert!(msg(need(1, 3, 0)).1.contains("vCPU budget (2 of 4 vCPUs"));
        assert_eq!(msg(need(0, 0, 3)), (Unavailable::Disk, "3 GiB more would exceed this host's workstation disk budget (8 of 10 GiB in use)".into()));
        // A restart does not count its own running VM against itself.
        assert!(a.admit(rows, None, need(4096, 2, 0)).is_err());
        assert!(a.admit(rows, Some("a"), need(4096, 2, 0)).is_ok());
    }

    #[test]
    fn a_reservation_holds_room_until_dropped() {
        let a = Admission::new(Need { mem_mib: 1024, vcpus: 8, disk_gib: 8 });
        let half = Need { mem_mib: 512, vcpus: 1, disk_gib: 1 };
        let none = || Ok::<_, Error>(vec![]);
        let first = a.admit(none, None, half).unwrap();
        let second = a.admit(none, None, half).unwrap();
        assert!(a.admit(none, None, half).is_err(), "the reservations of operations in flight count");
        drop((first, second));
        assert!(a.admit(none, None, Need { mem_mib: 1024, ..half }).is_ok());
    }
}
