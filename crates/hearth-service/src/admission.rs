//! Admission: what this host may take on. Running (and paused) workstations count against a
//! memory and a vCPU budget, every workstation's own disk against a disk budget. A create or
//! start over budget is refused with the reason ([`Error::Unavailable`]), never attempted.
//!
//! Checks and the operations they admit are not atomic (a boot takes seconds), so an admitted
//! operation holds a [`Reservation`] for its workstation until its outcome is in the store:
//! two creates racing for the last room cannot both get it. A workstation is counted exactly
//! once at every moment: by its reservation while it has one (whatever its record says in the
//! meantime), else by its record. The store is read while the reservations' lock is held, and
//! an operation records its outcome before it gives its reservation back (under that lock),
//! so a check never sees a workstation in neither place, nor in both.

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
    /// Workstations with an operation in flight, each with all it will hold if it succeeds.
    reserved: Mutex<Vec<(String, Need)>>,
}

/// Room held for an operation in flight on one workstation; given back when dropped.
#[must_use]
pub struct Reservation<'a> {
    admission: &'a Admission,
    id: String,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut r = self.admission.reserved.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(i) = r.iter().position(|(id, _)| *id == self.id) {
            r.swap_remove(i);
        }
    }
}

impl Admission {
    pub fn new(budget: Need) -> Admission {
        Admission { budget, reserved: Mutex::new(Vec::new()) }
    }

    /// Reserves `need`, all that workstation `id` will hold once the operation succeeds
    /// (its memory and vCPUs if it will run, its disk), if it fits beside what the other
    /// records hold (`rows`, read under this check's lock) and what other operations have
    /// reserved. Its own record does not count while it is reserved: a restart's running VM
    /// is about to be replaced by the one reserved.
    pub fn admit<E: Into<Error>>(&self, rows: impl FnOnce() -> Result<Vec<Row>, E>, id: &str, need: Need) -> Result<Reservation<'_>, Error> {
        let mut reserved = self.reserved.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let rows = rows().map_err(Into::into)?;
        let held = |rid: &str| rid == id || reserved.iter().any(|(r, _)| r == rid);
        let counted: Vec<Row> = rows.into_iter().filter(|r| !held(&r.id)).collect();
        let used = reserved.iter().fold(Need::in_use(&counted), |n, (_, r)| n.add(*r));
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
        reserved.push((id.to_string(), need));
        Ok(Reservation { admission: self, id: id.to_string() })
    }

    /// What is held now, counted as [`Admission::admit`] counts it: the records (`rows`, read
    /// under the reservations' lock), each workstation with an operation in flight by its
    /// reservation instead.
    pub fn in_use<E: Into<Error>>(&self, rows: impl FnOnce() -> Result<Vec<Row>, E>) -> Result<Need, Error> {
        let reserved = self.reserved.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let rows = rows().map_err(Into::into)?;
        let counted: Vec<Row> = rows.into_iter().filter(|r| !reserved.iter().any(|(id, _)| *id == r.id)).collect();
        Ok(reserved.iter().fold(Need::in_use(&counted), |n, (_, r)| n.add(*r)))
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
        assert!(a.admit(rows, "new", need(2048, 2, 2)).is_ok());
        let msg = |n| match a.admit(rows, "new", n).err().unwrap() {
            Error::Unavailable { what, message } => (what, message),
            other => panic!("{other:?}"),
        };
        assert!(msg(need(4096, 1, 0)).1.contains("memory budget (2048 of 4096 MiB"));
        assert_eq!(msg(need(1, 3, 0)).0, Unavailable::Vcpus);
        assert!(msg(need(1, 3, 0)).1.contains("vCPU budget (2 of 4 vCPUs"));
        assert_eq!(msg(need(0, 0, 3)), (Unavailable::Disk, "3 GiB more would exceed this host's workstation disk budget (8 of 10 GiB in use)".into()));
        // A restart does not count its own running VM against itself.
        assert!(a.admit(rows, "new", need(4096, 2, 0)).is_err());
        assert!(a.admit(rows, "a", need(4096, 2, 4)).is_ok());
    }

    #[test]
    fn a_reservation_holds_room_until_dropped() {
        let a = Admission::new(Need { mem_mib: 1024, vcpus: 8, disk_gib: 8 });
        let half = Need { mem_mib: 512, vcpus: 1, disk_gib: 1 };
        let none = || Ok::<_, Error>(vec![]);
        let first = a.admit(none, "a", half).unwrap();
        let second = a.admit(none, "b", half).unwrap();
        assert!(a.admit(none, "c", half).is_err(), "the reservations of operations in flight count");
        drop((first, second));
        assert!(a.admit(none, "c", Need { mem_mib: 1024, ..half }).is_ok());
    }

    #[test]
    fn a_workstation_is_counted_once_while_its_operation_records_its_outcome() {
        let a = Admission::new(Need { mem_mib: 1024, vcpus: 8, disk_gib: 8 });
        let need = Need { mem_mib: 512, vcpus: 1, disk_gib: 1 };
        let booting = a.admit(|| Ok::<_, Error>(vec![]), "a", need).unwrap();
        // Its boot is recorded while it still holds its reservation: not counted twice.
        let recorded = || Ok::<_, Error>(vec![row("a", Running, 512, 1, 1)]);
        let other = a.admit(recorded, "b", need).unwrap();
        drop((booting, other));
        // Given back: its record counts.
        assert!(a.admit(recorded, "c", need).is_ok());
        assert!(a.admit(|| Ok::<_, Error>(vec![row("a", Running, 512, 1, 1), row("b", Running, 512, 1, 1)]), "c", need).is_err());
    }
}
