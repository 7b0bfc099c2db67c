//! Hibernation: a workstation's whole VM (memory, devices, every process and terminal in
//! it) written to a snapshot in its directory and its Firecracker ended; waking loads the
//! snapshot into a fresh Firecracker and the guest goes on where it was, clock and
//! randomness refreshed.
//!
//! On disk the order makes every crash recoverable: the snapshot is written under
//! `snapshot.partial/` and renamed to `snapshot/` once complete and synced, before the
//! record says `hibernated`; a wake removes `snapshot/` before the record says `running`
//! (the disk moves on from there and that memory must never load again). So a `snapshot/`
//! is always the newest complete one, and a server killed at any point leaves the VM
//! (running, or paused and recorded so) or a complete snapshot, never neither: reconcile
//! turns "running, no VM, a snapshot" into hibernated.
//!
//! Must not: decide when to hibernate (the server's idle policy and shutdown do), or keep a
//! snapshot that failed to load (it never will: the wake cold-boots from the disks instead).

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use hearth_proto::control::ExecSpec;
use hearth_proto::unix_ms_now;
use hearth_vmm::vm::Vm;

use crate::record::State;
use crate::workstation::{remove_tree, write_json, Workstation};
use crate::RuntimeError;

/// A snapshot's files, in `snapshot/` (or `snapshot.partial/` while written).
pub(crate) const STATE_FILE: &str = "vm.state";
pub(crate) const MEM_FILE: &str = "vm.mem";
/// How long the guest may take to write its page cache to its disk before the snapshot.
const SYNC_SECS: u64 = 60;

/// Where a hibernation's time went, and what it left on disk.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Hibernation {
    /// The guest writing its dirty pages to its disks.
    pub sync_ms: f64,
    /// Firecracker pausing and writing its snapshot.
    pub snapshot_ms: f64,
    /// Zero blocks of the memory file punched into holes.
    pub sparse_ms: f64,
    /// The files and the directory synced, the snapshot renamed into place.
    pub fsync_ms: f64,
    /// The snapshot's bytes on disk.
    pub disk_bytes: u64,
}

impl std::fmt::Display for Hibernation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = |ms: f64| ms / 1000.0;
        write!(
            f,
            "guest sync {:.1} s, snapshot {:.1} s, sparse {:.1} s, fsync {:.1} s; {} MiB on disk",
            s(self.sync_ms),
            s(self.snapshot_ms),
            s(self.sparse_ms),
            s(self.fsync_ms),
            self.disk_bytes >> 20
        )
    }
}

/// How a wake went.
#[derive(Debug, Clone, PartialEq)]
pub enum Wake {
    /// The snapshot loaded: every process goes on.
    Restored { ms: f64 },
    /// The snapshot did not load (`why`); it was discarded and the workstation booted from
    /// its disks instead, which keep what the guest had synced when it hibernated.
    ColdBoot { why: String, ms: f64 },
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// fsync a file or directory.
fn sync_path(p: &Path) -> Result<(), RuntimeError> {
    fs::File::open(p).and_then(|f| f.sync_all()).map_err(RuntimeError::io(format!("syncing {}", p.display())))
}

impl Workstation {
    /// Writes the running (or paused) workstation to a snapshot and ends its Firecracker.
    /// On failure the VM goes on as it was and nothing of the attempt is left.
    pub fn hibernate(&self) -> Result<Hibernation, RuntimeError> {
        let _lock = self.lock()?;
        let (mut record, vm) = self.reconcile()?;
        let vm = match vm {
            Some(vm) if matches!(record.state, State::Running | State::Paused) => vm,
            _ => return Err(self.conflict(record.state, "hibernate")),
        };
        let was = record.state;
        let mut took = Hibernation::default();
        let t = Instant::now();
        if was == State::Running {
            // The guest's dirty pages go to its disk first: a snapshot that later fails to
            // load then costs the processes, not the files. Best effort: a guest too busy
            // to sync is still hibernated whole.
            let spec = ExecSpec { timeout_secs: Some(SYNC_SECS), ..ExecSpec::new(["sync"]) };
            let synced = vm.agent(Duration::from_secs(10)).map_err(|e| e.to_string()).and_then(|a| a.exec_collect(spec).map_err(|e| e.to_string()));
            if let Err(e) = synced {
                eprintln!("hearth: {}: syncing the guest's disks before hibernating: {e}", self.id());
            }
        }
        took.sync_ms = ms(t);
        // Recorded paused before the snapshot pauses it: a server that dies from here on
        // leaves a paused VM that the record names, which a resume brings back.
        record.state = State::Paused;
        write_json(&self.layout().state(), &record)?;
        let partial = self.layout().snapshot_partial();
        let snapshot = self.layout().snapshot();
        let written = remove_tree(&partial)
            .and_then(|()| fs::create_dir(&partial).map_err(RuntimeError::io(format!("creating {}", partial.display()))))
            .and_then(|()| {
                let t = Instant::now();
                vm.snapshot(&partial.join(STATE_FILE), &partial.join(MEM_FILE))?;
                took.snapshot_ms = ms(t);
                Ok(())
            })
            .and_then(|()| {
                let t = Instant::now();
                // Most of a guest's memory is pages it never touched, written out as zeros:
                // holes instead, before they are synced (a 512 MiB guest's file took 36 MiB on
                // disk after this instead of 512 in the box: bench/RESULTS.md).
                let mem = partial.join(MEM_FILE);
                hearth_fs::punch_zeros(&mem).map_err(RuntimeError::io(format!("making {} sparse", mem.display())))?;
                took.sparse_ms = ms(t);
                let t = Instant::now();
                took.disk_bytes = [STATE_FILE, MEM_FILE].iter().filter_map(|f| fs::metadata(partial.join(f)).ok()).map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512).sum();
                sync_path(&partial.join(STATE_FILE))?;
                sync_path(&partial.join(MEM_FILE))?;
                fs::rename(&partial, &snapshot).map_err(RuntimeError::io(format!("renaming {} to {}", partial.display(), snapshot.display())))?;
                sync_path(&self.layout().dir)?;
                took.fsync_ms = ms(t);
                Ok(())
            });
        if let Err(e) = written {
            let _ = remove_tree(&partial);
            if was == State::Running {
                let _ = vm.resume();
            }
            record.state = was;
            write_json(&self.layout().state(), &record)?;
            return Err(e);
        }
        record.state = State::Hibernated;
        record.hibernated_unix_ms = Some(unix_ms_now());
        write_json(&self.layout().state(), &record)?;
        // Paused and written down: nothing in it can notice.
        vm.kill();
        Ok(took)
    }

    /// Brings a hibernated workstation back: its snapshot loaded into a fresh Firecracker,
    /// or, when that fails, a cold boot from its disks (the snapshot discarded, the reason
    /// returned). Either way it is running after.
    pub fn wake(&self) -> Result<Wake, RuntimeError> {
        let _lock = self.lock()?;
        let (mut record, _) = self.reconcile()?;
        if record.state != State::Hibernated {
            return Err(self.conflict(record.state, "wake"));
        }
        let cfg = self.vm_config(&record)?;
        let snapshot = self.layout().snapshot();
        let t = Instant::now();
        let how = match Vm::restore(&self.layout().vm(), &cfg, &snapshot.join(STATE_FILE), &snapshot.join(MEM_FILE), self.runtime().ready_timeout) {
            Ok(vm) => {
                // Its disk moves on from here: that memory must never be loaded again.
                if let Err(e) = remove_tree(&snapshot) {
                    vm.kill();
                    return Err(e);
                }
                Wake::Restored { ms: ms(t) }
            }
            Err(e) => {
                let why = e.to_string();
                // A snapshot that did not load never will. Stopped until the boot succeeds,
                // so a failed one leaves an honest record.
                remove_tree(&snapshot)?;
                record.state = State::Stopped;
                record.hibernated_unix_ms = None;
                record.stopped_unix_ms = Some(unix_ms_now());
                record.last_stop = Some("snapshot_unusable".into());
                write_json(&self.layout().state(), &record)?;
                self.check_base_image()?;
                Vm::launch_timed(&self.layout().vm(), &cfg, self.runtime().ready_timeout)?;
                record.started_unix_ms = Some(unix_ms_now());
                Wake::ColdBoot { why, ms: ms(t) }
            }
        };
        record.state = State::Running;
        record.hibernated_unix_ms = None;
        record.crash = None;
        write_json(&self.layout().state(), &record)?;
        Ok(how)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workstation::tests::runtime;

    /// Sets the record's state as a server would have left it.
    fn set_state(ws: &Workstation, state: State) {
        let mut r: crate::Record = serde_json::from_slice(&fs::read(ws.layout().state()).unwrap()).unwrap();
        r.state = state;
        write_json(&ws.layout().state(), &r).unwrap();
    }

    fn snapshot_files(ws: &Workstation) {
        fs::create_dir(ws.layout().snapshot()).unwrap();
        fs::write(ws.layout().snapshot().join(STATE_FILE), b"state").unwrap();
        fs::write(ws.layout().snapshot().join(MEM_FILE), b"mem").unwrap();
    }

    #[test]
    fn a_server_killed_after_the_snapshot_finds_it_hibernated_not_crashed() {
        let d = tempfile::tempdir().unwrap();
        let (rt, spec) = runtime(d.path());
        let ws = rt.create("w", spec).unwrap();
        // Recorded running (or paused), no VM, a complete snapshot: it hibernated.
        for was in [State::Running, State::Paused] {
            set_state(&ws, was);
            snapshot_files(&ws);
            let st = ws.status().unwrap();
            assert_eq!((st.record.state, st.record.crash), (State::Hibernated, None), "from {was}");
            assert!(st.record.hibernated_unix_ms.is_some());
            // Stopping it drops the snapshot before the record leaves hibernated.
            ws.stop().unwrap();
            assert!(!ws.layout().snapshot().exists());
            assert_eq!(ws.status().unwrap().record.state, State::Stopped);
        }
        // A half-written one is not a snapshot: no VM and no complete snapshot is a crash.
        set_state(&ws, State::Running);
        fs::create_dir(ws.layout().snapshot_partial()).unwrap();
        assert_eq!(ws.status().unwrap().record.state, State::Crashed);
    }

    #[test]
    fn hibernated_without_its_snapshot_is_crashed_and_a_start_never_meets_a_stale_one() {
        let d = tempfile::tempdir().unwrap();
        let (rt, spec) = runtime(d.path());
        let ws = rt.create("w", spec).unwrap();
        set_state(&ws, State::Hibernated);
        let st = ws.status().unwrap();
        assert_eq!((st.record.state, st.record.crash.as_deref()), (State::Crashed, Some("hibernated, but its snapshot is gone")));
        // Only a hibernated workstation wakes; a running one does not hibernate twice.
        assert!(matches!(ws.wake(), Err(RuntimeError::Conflict { op: "wake", .. })));
        assert!(matches!(ws.hibernate(), Err(RuntimeError::Conflict { op: "hibernate", .. })));
        // A hibernated one is woken, not started.
        snapshot_files(&ws);
        set_state(&ws, State::Hibernated);
        assert!(matches!(ws.start(), Err(RuntimeError::Conflict { op: "start", .. })));
        // A stale snapshot beside a stopped record is removed by the next start (which then
        // fails here for want of a Firecracker, after the removal).
        set_state(&ws, State::Stopped);
        assert!(ws.start().is_err());
        assert!(!ws.layout().snapshot().exists(), "a start left a snapshot that no longer matches the disk");
    }
}
