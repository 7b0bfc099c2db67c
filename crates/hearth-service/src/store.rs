//! The server's state in SQLite (`<data>/hearth.db`): workstations, their events and terminal
//! session records. Versioned
//! migrations run at open; writes that belong together run in one transaction.
//!
//! The database is the index of workstations and what the API shows about them (owner, name,
//! spec, timestamps, events); the VM's own state lives in its runtime directory and is
//! reconciled into the row (see `crate::reconcile`). Calls block: the service runs them on
//! the blocking pool.

use std::path::Path;
use std::sync::Mutex;

use hearth_proto::api::{Bandwidth, Egress, Event, Quota, Usage, WorkstationState};
use rusqlite::{params, Connection, OptionalExtension};

/// Each entry takes the schema from version i to i+1.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE workstations (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        owner TEXT NOT NULL,
        vcpu_count INTEGER NOT NULL,
        mem_size_mib INTEGER NOT NULL,
        disk_size_gib INTEGER NOT NULL,
        smt_enabled INTEGER NOT NULL,
        read_only INTEGER NOT NULL,
        rx_mbps INTEGER,
        tx_mbps INTEGER,
        recipe TEXT NOT NULL,
        state TEXT NOT NULL,
        address TEXT,
        created_ms INTEGER NOT NULL,
        started_ms INTEGER,
        stopped_ms INTEGER,
        crash TEXT
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        workstation_id TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        kind TEXT NOT NULL,
        message TEXT NOT NULL
    );
    CREATE INDEX events_by_workstation ON events (workstation_id, id);",
    // Set on workstations stopped because their host went down (the box shutting down):
    // the next start boots them again.
    "ALTER TABLE workstations ADD COLUMN resume INTEGER NOT NULL DEFAULT 0;",
    // Terminal sessions live in the agent; their records outlive them (a stop ends them all).
    "CREATE TABLE terminals (
        workstation_id TEXT NOT NULL,
        id TEXT NOT NULL,
        argv TEXT NOT NULL,
        user TEXT,
        rows INTEGER NOT NULL,
        cols INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        ended_ms INTEGER,
        PRIMARY KEY (workstation_id, id)
    );",
    // Networking: the /29 slot of the address range a workstation holds (null: no network),
    // unique so that two creates can never share one, and its egress mode.
    "ALTER TABLE workstations ADD COLUMN slot INTEGER;
    CREATE UNIQUE INDEX workstations_slot ON workstations (slot);
    ALTER TABLE workstations ADD COLUMN egress TEXT NOT NULL DEFAULT 'nat';",
    // Accounts and their credentials (API tokens, browser sessions, one-time sign-in links:
    // `kind`), each stored as its secret's digest. What the one owner of a server without
    // accounts (`local`) owned becomes the first administrator's, `admin`.
    "CREATE TABLE users (
        id TEXT PRIMARY KEY,
        email TEXT,
        password TEXT,
        admin INTEGER NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE credentials (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        user TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        digest TEXT NOT NULL,
        name TEXT NOT NULL,
        scope TEXT NOT NULL,
        csrf TEXT,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER,
        last_used_ms INTEGER
    );
    CREATE INDEX credentials_by_user ON credentials (user, kind);
    UPDATE workstations SET owner = 'admin' WHERE owner = 'local';",
    // The audit log (crate::audit).
    "CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms INTEGER NOT NULL,
        user TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX audit_by_user ON audit (user, id);
    CREATE INDEX audit_by_target ON audit (target, id);",
    // A user's own quota (JSON, `api::Quota`: what differs from their role's).
    "ALTER TABLE users ADD COLUMN quota TEXT;",
    // Workstations shared with other users (crate::sharing); a share ends with its
    // workstation and with its user.
    "CREATE TABLE shares (
        workstation_id TEXT NOT NULL REFERENCES workstations (id) ON DELETE CASCADE,
        user TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        role TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        PRIMARY KEY (workstation_id, user)
    );
    CREATE INDEX shares_by_user ON shares (user);",
    // The email allowlist administrators keep through the API (the configuration's adds to it).
    "CREATE TABLE allow_emails (pattern TEXT PRIMARY KEY);",
    // What a workstation runs once, at its first boot (api::Setup as JSON), and when it
    // was started (null: not yet).
    "CREATE TABLE setups (
        workstation_id TEXT PRIMARY KEY REFERENCES workstations (id) ON DELETE CASCADE,
        spec TEXT NOT NULL,
        ran_ms INTEGER
    );",
];

/// Ended terminal records kept per workstation (the oldest go first).
pub const MAX_ENDED_TERMINALS: i64 = 100;

/// Events kept per workstation (older ones are dropped as new ones come).
pub const MAX_EVENTS_PER_WORKSTATION: i64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    /// No free slot in the address range (the API answers 503 `address_range_exhausted`).
    #[error(transparent)]
    Alloc(#[from] hearth_net::AllocError),
    /// The owner's quota does not admit it (`limit` names which).
    #[error("over the quota's {limit} ({used} of {max})")]
    Quota { limit: &'static str, max: u64, used: u64 },
    /// The server holds as many workstations as it may (`limits.max_workstations`).
    #[error("this server holds at most {max} workstations")]
    Full { max: u32 },
    #[error("the database is at schema version {found}, newer than this hearth ({known}); upgrade hearth")]
    TooNew { found: usize, known: usize },
}

/// A terminal session's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalRow {
    pub id: String,
    pub argv: Vec<String>,
    pub user: Option<String>,
    pub rows: u16,
    pub cols: u16,
    pub created_ms: u64,
    pub ended_ms: Option<u64>,
}

/// A workstation row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub vcpu_count: u8,
    pub mem_size_mib: u32,
    pub disk_size_gib: u32,
    pub smt_enabled: bool,
    pub read_only: bool,
    pub bandwidth: Option<Bandwidth>,
    pub recipe: String,
    pub state: WorkstationState,
    /// The guest's address (set with the slot).
    pub address: Option<String>,
    /// The slot of the address range it holds; none: it has no network.
    pub slot: Option<u32>,
    /// Meaningful with a slot.
    pub egress: Egress,
    pub created_ms: u64,
    pub started_ms: Option<u64>,
    pub stopped_ms: Option<u64>,
    pub crash: Option<String>,
}

pub struct Store {
    conn: Mutex<Connection>,
    /// Counts committed changes a workstation list shows (a row added, changed, removed,
    /// shared): live lists wait on it rather than poll.
    changes: tokio::sync::watch::Sender<u64>,
}

/// A text column that holds one of an enum's names.
pub(crate) fn parsed<T: std::str::FromStr<Err = String>>(r: &rusqlite::Row<'_>, column: &str) -> rusqlite::Result<T> {
    let text: String = r.get(column)?;
    text.parse().map_err(|e: String| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into()))
}

/// A stored egress; anything unknown is `none` (fail closed).
fn stored_egress(r: &rusqlite::Row<'_>) -> rusqlite::Result<Egress> {
    let text: String = r.get("egress")?;
    Ok(if text == Egress::Nat.as_str() { Egress::Nat } else { Egress::None })
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let rx: Option<u32> = r.get("rx_mbps")?;
    let tx: Option<u32> = r.get("tx_mbps")?;
    Ok(Row {
        id: r.get("id")?,
        name: r.get("name")?,
        owner: r.get("owner")?,
        vcpu_count: r.get("vcpu_count")?,
        mem_size_mib: r.get("mem_size_mib")?,
        disk_size_gib: r.get("disk_size_gib")?,
        smt_enabled: r.get("smt_enabled")?,
        read_only: r.get("read_only")?,
        bandwidth: rx.zip(tx).map(|(rx_mbps, tx_mbps)| Bandwidth { rx_mbps, tx_mbps }),
        recipe: r.get("recipe")?,
        state: parsed(r, "state")?,
        address: r.get("address")?,
        slot: r.get("slot")?,
        egress: stored_egress(r)?,
        created_ms: r.get("created_ms")?,
        started_ms: r.get("started_ms")?,
        stopped_ms: r.get("stopped_ms")?,
        crash: r.get("crash")?,
    })
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        Store::init(conn)
    }

    /// A database in memory (tests).
    pub fn in_memory() -> Result<Store, StoreError> {
        Store::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Store, StoreError> {
        // WAL: readers do not wait for the writer; synchronous=FULL: a committed create
        // survives a power cut.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > MIGRATIONS.len() {
            return Err(StoreError::TooNew { found: version, known: MIGRATIONS.len() });
        }
        for (i, m) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.transaction()?;
            tx.execute_batch(m)?;
            tx.pragma_update(None, "user_version", i + 1)?;
            tx.commit()?;
        }
        Ok(Store { conn: Mutex::new(conn), changes: tokio::sync::watch::Sender::new(0) })
    }

    pub(crate) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Says a change a workstation list shows was committed.
    pub(crate) fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes as they are committed (the value is a counter; what changed is read anew).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Inserts a workstation and its `created` event together, unless `max` rows exist
    /// already (counted in the same transaction, so concurrent creates cannot pass it). With
    /// a `range`, it also takes the lowest slot no row holds, in the same transaction (the
    /// UNIQUE index keeps a concurrent writer from taking it too), and the guest address that
    /// goes with it. Returns the row as stored.
    /// Adds a workstation, unless the server holds `max` or its owner's `quota` would be
    /// exceeded (both counted in the same transaction, so creates at once cannot overshoot).
    pub fn insert(&self, w: &Row, max: u32, quota: &Quota, range: Option<&hearth_net::Range>, now_ms: u64) -> Result<Row, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let count: u64 = tx.query_row("SELECT COUNT(*) FROM workstations", [], |r| r.get(0))?;
        if count >= u64::from(max) {
            return Err(StoreError::Full { max });
        }
        let held = usage(&tx, &w.owner)?;
        let adds = Usage { workstations: 1, vcpus: w.vcpu_count.into(), mem_mib: w.mem_size_mib.into(), disk_gib: w.disk_size_gib.into(), execs: 0 };
        if let Some((limit, max, used)) = over_quota(quota, &held, &adds) {
            return Err(StoreError::Quota { limit, max, used });
        }
        let mut w = w.clone();
        if let Some(range) = range {
            let used = {
                let mut st = tx.prepare("SELECT slot FROM workstations WHERE slot IS NOT NULL")?;
                let used = st.query_map([], |r| r.get::<_, u32>(0))?.collect::<Result<std::collections::BTreeSet<u32>, _>>()?;
                used
            };
            let slot = range.allocate(&used)?;
            w.slot = Some(slot);
            w.address = Some(range.slot(slot)?.guest().to_string());
        }
        tx.execute(
            "INSERT INTO workstations (id, name, owner, vcpu_count, mem_size_mib, disk_size_gib, smt_enabled, read_only,
                rx_mbps, tx_mbps, recipe, state, address, created_ms, started_ms, stopped_ms, crash, slot, egress)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
            params![
                w.id,
                w.name,
                w.owner,
                w.vcpu_count,
                w.mem_size_mib,
                w.disk_size_gib,
                w.smt_enabled,
                w.read_only,
                w.bandwidth.map(|b| b.rx_mbps),
                w.bandwidth.map(|b| b.tx_mbps),
                w.recipe,
                w.state.as_str(),
                w.address,
                w.created_ms,
                w.started_ms,
                w.stopped_ms,
                w.crash,
                w.slot,
                w.egress.as_str()
            ],
        )?;
        let net = w.address.as_ref().map(|a| format!(", address {a}, egress {}", w.egress.as_str())).unwrap_or_default();
        add_event(
            &tx,
            &w.id,
            now_ms,
            "created",
            &format!("{} vCPU, {} MiB, {} GiB{}{net}", w.vcpu_count, w.mem_size_mib, w.disk_size_gib, if w.read_only { ", read-only" } else { "" }),
        )?;
        tx.commit()?;
        self.changed();
        Ok(w)
    }

    pub fn get(&self, id: &str) -> Result<Option<Row>, StoreError> {
        Ok(self.conn().query_row("SELECT * FROM workstations WHERE id = ?1", [id], row).optional()?)
    }

    /// Every workstation, oldest first.
    pub fn list(&self) -> Result<Vec<Row>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT * FROM workstations ORDER BY created_ms, id")?;
        let rows = st.query_map([], row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The workstations `owner` owns, oldest first.
    pub fn list_owned(&self, owner: &str) -> Result<Vec<Row>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT * FROM workstations WHERE owner = ?1 ORDER BY created_ms, id")?;
        let rows = st.query_map([owner], row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Records a change of state with its timestamps and the event that explains it, in one
    /// transaction.
    pub fn record(&self, id: &str, change: Transition<'_>, now_ms: u64) -> Result<(), StoreError> {
        let (state, kind, message) = change.parts();
        let started = matches!(change, Transition::Started { .. }).then_some(now_ms);
        let stopped = matches!(change, Transition::Stopped { .. } | Transition::Crashed { .. }).then_some(now_ms);
        let crash = match change {
            Transition::Crashed { why } => Some(why),
            _ => None,
        };
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE workstations SET state = ?2, started_ms = COALESCE(?3, started_ms), stopped_ms = COALESCE(?4, stopped_ms), crash = ?5 WHERE id = ?1",
            params![id, state.as_str(), started, stopped, crash],
        )?;
        add_event(&tx, id, now_ms, kind, message)?;
        tx.commit()?;
        self.changed();
        Ok(())
    }

    /// Records an event alone.
    pub fn event(&self, id: &str, kind: &str, message: &str, now_ms: u64) -> Result<(), StoreError> {
        let conn = self.conn();
        add_event(&conn, id, now_ms, kind, message)
    }

    pub fn events(&self, id: &str, limit: i64) -> Result<Vec<Event>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT id, at_ms, kind, message FROM events WHERE workstation_id = ?1 ORDER BY id DESC LIMIT ?2")?;
        let mut v =
            st.query_map(params![id, limit], |r| Ok(Event { id: r.get(0)?, at_unix_ms: r.get(1)?, kind: r.get(2)?, message: r.get(3)? }))?.collect::<Result<Vec<_>, _>>()?;
        v.reverse();
        Ok(v)
    }

    /// Keeps what `ws` is to run at its first boot.
    pub fn set_setup(&self, ws: &str, setup: &hearth_proto::api::Setup) -> Result<(), StoreError> {
        let spec = serde_json::to_string(setup).expect("a setup serializes");
        self.conn().execute("INSERT OR REPLACE INTO setups (workstation_id, spec, ran_ms) VALUES (?1, ?2, NULL)", params![ws, spec])?;
        Ok(())
    }

    /// The setup `ws` has not run yet, marked run as of `now_ms` (once: a second call, or a
    /// call beside this one, gets none).
    pub fn take_setup(&self, ws: &str, now_ms: u64) -> Result<Option<hearth_proto::api::Setup>, StoreError> {
        let conn = self.conn();
        let spec: Option<String> =
            conn.query_row("UPDATE setups SET ran_ms = ?2 WHERE workstation_id = ?1 AND ran_ms IS NULL RETURNING spec", params![ws, now_ms], |r| r.get(0)).optional()?;
        Ok(spec.and_then(|s| serde_json::from_str(&s).ok()))
    }

    /// Records a terminal opened in `ws` (replacing an ended one with its id: a restarted
    /// agent counts ids from 1 again), with its event.
    pub fn open_terminal(&self, ws: &str, t: &TerminalRow, now_ms: u64) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let argv = serde_json::to_string(&t.argv).expect("argv serializes");
        tx.execute(
            "INSERT OR REPLACE INTO terminals (workstation_id, id, argv, user, rows, cols, created_ms, ended_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL)",
            params![ws, t.id, argv, t.user, t.rows, t.cols, t.created_ms],
        )?;
        add_event(&tx, ws, now_ms, "terminal_opened", &t.id)?;
        tx.commit()?;
        Ok(())
    }

    /// Marks terminals of `ws` ended: those named, with an event each when `closed` (a
    /// client closed them), or quietly (they were found gone). Keeps the newest
    /// [`MAX_ENDED_TERMINALS`] ended records.
    pub fn end_terminals(&self, ws: &str, ids: &[&str], closed: bool, now_ms: u64) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for id in ids {
            let n = tx.execute("UPDATE terminals SET ended_ms = ?3 WHERE workstation_id = ?1 AND id = ?2 AND ended_ms IS NULL", params![ws, id, now_ms])?;
            if closed && n == 1 {
                add_event(&tx, ws, now_ms, "terminal_closed", id)?;
            }
        }
        tx.execute(
            "DELETE FROM terminals WHERE workstation_id = ?1 AND ended_ms IS NOT NULL AND rowid NOT IN
               (SELECT rowid FROM terminals WHERE workstation_id = ?1 AND ended_ms IS NOT NULL ORDER BY ended_ms DESC, rowid DESC LIMIT ?2)",
            params![ws, MAX_ENDED_TERMINALS],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The terminal records of `ws`, oldest first.
    pub fn terminals(&self, ws: &str) -> Result<Vec<TerminalRow>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT id, argv, user, rows, cols, created_ms, ended_ms FROM terminals WHERE workstation_id = ?1 ORDER BY created_ms, rowid")?;
        let v = st
            .query_map([ws], |r| {
                let argv: String = r.get(1)?;
                Ok(TerminalRow {
                    id: r.get(0)?,
                    argv: serde_json::from_str(&argv).unwrap_or_default(),
                    user: r.get(2)?,
                    rows: r.get(3)?,
                    cols: r.get(4)?,
                    created_ms: r.get(5)?,
                    ended_ms: r.get(6)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(v)
    }

    /// Deletes a workstation, its events and terminal records.
    pub fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM events WHERE workstation_id = ?1", [id])?;
        tx.execute("DELETE FROM terminals WHERE workstation_id = ?1", [id])?;
        let n = tx.execute("DELETE FROM workstations WHERE id = ?1", [id])?;
        tx.commit()?;
        self.changed();
        Ok(n == 1)
    }

    /// Marks (or unmarks) a workstation to be booted again at the next start.
    pub fn set_resume(&self, id: &str, resume: bool) -> Result<(), StoreError> {
        self.conn().execute("UPDATE workstations SET resume = ?2 WHERE id = ?1", params![id, resume])?;
        Ok(())
    }

    /// The workstations marked to be booted again.
    pub fn to_resume(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT id FROM workstations WHERE resume = 1 ORDER BY created_ms, id")?;
        let ids = st.query_map([], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
        Ok(ids)
    }

    /// What `owner`'s workstations hold (`execs` is not the store's: 0).
    pub fn usage(&self, owner: &str) -> Result<Usage, StoreError> {
        usage(&self.conn(), owner)
    }

    pub fn count(&self) -> Result<u64, StoreError> {
        Ok(self.conn().query_row("SELECT COUNT(*) FROM workstations", [], |r| r.get(0))?)
    }
}

/// A change of a workstation's state, with what its event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition<'a> {
    /// Booted; sets `started`.
    Started {
        why: &'a str,
    },
    /// Stopped (how, or why); sets `stopped`.
    Stopped {
        why: &'a str,
    },
    /// Its VM died on its own; sets `stopped` and the crash reason.
    Crashed {
        why: &'a str,
    },
    Paused,
    Resumed,
    /// Saved to a snapshot, its VM ended.
    Hibernated {
        why: &'a str,
    },
    /// Back from a snapshot, every process where it was.
    Woken {
        why: &'a str,
    },
}

impl Transition<'_> {
    /// The state it leads to, its event's kind and message.
    fn parts(&self) -> (WorkstationState, &'static str, &str) {
        match *self {
            Transition::Started { why } => (WorkstationState::Running, "started", why),
            Transition::Stopped { why } => (WorkstationState::Stopped, "stopped", why),
            Transition::Crashed { why } => (WorkstationState::Crashed, "crashed", why),
            Transition::Paused => (WorkstationState::Paused, "paused", ""),
            Transition::Resumed => (WorkstationState::Running, "resumed", ""),
            Transition::Hibernated { why } => (WorkstationState::Hibernated, "hibernated", why),
            Transition::Woken { why } => (WorkstationState::Running, "woken", why),
        }
    }
}

fn add_event(conn: &Connection, id: &str, at_ms: u64, kind: &str, message: &str) -> Result<(), StoreError> {
    conn.execute("INSERT INTO events (workstation_id, at_ms, kind, message) VALUES (?1, ?2, ?3, ?4)", params![id, at_ms, kind, message])?;
    conn.execute(
        "DELETE FROM events WHERE workstation_id = ?1 AND id <= (SELECT id FROM events WHERE workstation_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
        params![id, MAX_EVENTS_PER_WORKSTATION],
    )?;
    Ok(())
}

fn usage(conn: &Connection, owner: &str) -> Result<Usage, StoreError> {
    let sql = "SELECT COUNT(*), COALESCE(SUM(vcpu_count), 0), COALESCE(SUM(mem_size_mib), 0), COALESCE(SUM(disk_size_gib), 0) FROM workstations WHERE owner = ?1";
    Ok(conn.query_row(sql, [owner], |r| Ok(Usage { workstations: r.get(0)?, vcpus: r.get(1)?, mem_mib: r.get(2)?, disk_gib: r.get(3)?, execs: 0 }))?)
}

/// The first limit of `quota` that holding `adds` on top of `held` would pass: its name, its
/// value and what is held.
pub fn over_quota(quota: &Quota, held: &Usage, adds: &Usage) -> Option<(&'static str, u64, u64)> {
    [
        ("max_workstations", quota.max_workstations, held.workstations, adds.workstations),
        ("max_vcpus", quota.max_vcpus, held.vcpus, adds.vcpus),
        ("max_mem_mib", quota.max_mem_mib, held.mem_mib, adds.mem_mib),
        ("max_disk_gib", quota.max_disk_gib, held.disk_gib, adds.disk_gib),
        ("max_execs", quota.max_execs, held.execs, adds.execs),
    ]
    .into_iter()
    .find_map(|(name, max, used, more)| max.filter(|m| more > 0 && used + more > *m).map(|m| (name, m, used)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws(id: &str) -> Row {
        Row {
            id: id.into(),
            name: "n".into(),
            owner: "o".into(),
            vcpu_count: 2,
            mem_size_mib: 512,
            disk_size_gib: 1,
            smt_enabled: false,
            read_only: false,
            bandwidth: Some(Bandwidth { rx_mbps: 10, tx_mbps: 20 }),
            recipe: "datascience".into(),
            state: WorkstationState::Stopped,
            address: None,
            slot: None,
            egress: Egress::Nat,
            created_ms: 5,
            started_ms: None,
            stopped_ms: None,
            crash: None,
        }
    }

    #[test]
    fn rows_and_events_round_trip_and_survive_a_reopen() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("hearth.db");
        {
            let s = Store::open(&path).unwrap();
            s.insert(&ws("a"), 100, &Quota::default(), None, 1).unwrap();
            s.record("a", Transition::Started { why: "boot 1.2 s" }, 7).unwrap();
        }
        let s = Store::open(&path).unwrap();
        let a = s.get("a").unwrap().unwrap();
        assert_eq!((a.state, a.started_ms, a.bandwidth), (WorkstationState::Running, Some(7), Some(Bandwidth { rx_mbps: 10, tx_mbps: 20 })));
        let kinds: Vec<_> = s.events("a", 10).unwrap().into_iter().map(|e| e.kind).collect();
        assert_eq!(kinds, ["created", "started"]);
        assert!(s.insert(&ws("a"), 100, &Quota::default(), None, 1).is_err(), "duplicate id");
        s.set_resume("a", true).unwrap();
        assert_eq!(s.to_resume().unwrap(), ["a"]);
        s.set_resume("a", false).unwrap();
        assert!(s.to_resume().unwrap().is_empty());
        assert!(s.delete("a").unwrap());
        assert_eq!((s.get("a").unwrap(), s.events("a", 10).unwrap().len(), s.count().unwrap()), (None, 0, 0));
    }

    #[test]
    fn events_are_bounded_per_workstation() {
        let s = Store::in_memory().unwrap();
        s.insert(&ws("a"), 100, &Quota::default(), None, 1).unwrap();
        for i in 0..(MAX_EVENTS_PER_WORKSTATION + 50) {
            s.event("a", "tick", &i.to_string(), 2).unwrap();
        }
        let ev = s.events("a", 5000).unwrap();
        assert_eq!(ev.len() as i64, MAX_EVENTS_PER_WORKSTATION);
        assert_eq!(ev.last().unwrap().message, (MAX_EVENTS_PER_WORKSTATION + 49).to_string());
    }

    #[test]
    fn terminal_records_end_and_are_bounded() {
        let s = Store::in_memory().unwrap();
        s.insert(&ws("a"), 100, &Quota::default(), None, 1).unwrap();
        let t = |id: &str, at: u64| TerminalRow { id: id.into(), argv: vec!["bash".into()], user: Some("scientist".into()), rows: 24, cols: 80, created_ms: at, ended_ms: None };
        s.open_terminal("a", &t("t1", 10), 10).unwrap();
        s.open_terminal("a", &t("t2", 11), 11).unwrap();
        s.end_terminals("a", &["t1"], true, 20).unwrap();
        s.end_terminals("a", &["t1", "t2"], false, 30).unwrap();
        let got: Vec<_> = s.terminals("a").unwrap().into_iter().map(|t| (t.id, t.ended_ms)).collect();
        assert_eq!(got, [("t1".into(), Some(20)), ("t2".into(), Some(30))], "an end is recorded once");
        let kinds: Vec<_> = s.events("a", 10).unwrap().into_iter().map(|e| e.kind).collect();
        assert_eq!(kinds, ["created", "terminal_opened", "terminal_opened", "terminal_closed"]);
        // A reused id replaces its ended record; ended records are bounded.
        s.open_terminal("a", &t("t1", 40), 40).unwrap();
        assert_eq!(s.terminals("a").unwrap().iter().find(|r| r.id == "t1").unwrap().ended_ms, None);
        for i in 0..(MAX_ENDED_TERMINALS + 10) {
            let id = format!("x{i}");
            s.open_terminal("a", &t(&id, 100 + i as u64), 100).unwrap();
            s.end_terminals("a", &[&id], false, 200 + i as u64).unwrap();
        }
        let rows = s.terminals("a").unwrap();
        assert_eq!(rows.iter().filter(|r| r.ended_ms.is_some()).count() as i64, MAX_ENDED_TERMINALS);
        assert!(rows.iter().any(|r| r.id == "t1" && r.ended_ms.is_none()), "live records are never dropped");
        assert!(s.delete("a").unwrap());
        assert!(s.terminals("a").unwrap().is_empty());
    }

    #[test]
    fn slots_are_the_lowest_free_unique_and_released_by_delete() {
        let s = Store::in_memory().unwrap();
        let range: hearth_net::Range = "10.200.0.0/28".parse().unwrap();
        assert_eq!(range.slots(), 2);
        let a = s.insert(&ws("a"), 100, &Quota::default(), Some(&range), 1).unwrap();
        let b = s.insert(&Row { egress: Egress::None, ..ws("b") }, 100, &Quota::default(), Some(&range), 1).unwrap();
        assert_eq!((a.slot, a.address.as_deref(), b.slot, b.address.as_deref()), (Some(0), Some("10.200.0.2"), Some(1), Some("10.200.0.10")));
        assert_eq!(s.get("b").unwrap().unwrap(), b);
        // Full: a clear error naming the range and its size, and no row written.
        let e = s.insert(&ws("c"), 100, &Quota::default(), Some(&range), 1).unwrap_err();
        assert!(matches!(e, StoreError::Alloc(hearth_net::AllocError::Exhausted { slots: 2, .. })), "{e}");
        assert!(e.to_string().contains("10.200.0.0/28") && e.to_string().contains("all 2"), "{e}");
        assert_eq!(s.get("c").unwrap(), None);
        // Without a range: no network, no slot.
        assert_eq!(s.insert(&ws("d"), 100, &Quota::default(), None, 1).unwrap().slot, None);
        // A freed slot is the next one given; the database itself refuses a shared slot.
        assert!(s.delete("a").unwrap());
        assert_eq!(s.insert(&ws("e"), 100, &Quota::default(), Some(&range), 1).unwrap().slot, Some(0));
        let dup = s.conn().execute("UPDATE workstations SET slot = 1 WHERE id = 'e'", []);
        assert!(dup.is_err(), "the UNIQUE index holds");
    }

    #[test]
    fn the_workstation_limit_is_kept_by_the_insert_itself() {
        let s = Store::in_memory().unwrap();
        s.insert(&ws("a"), 2, &Quota::default(), None, 1).unwrap();
        s.insert(&ws("b"), 2, &Quota::default(), None, 1).unwrap();
        assert!(matches!(s.insert(&ws("c"), 2, &Quota::default(), None, 1), Err(StoreError::Full { max: 2 })));
        assert_eq!(s.count().unwrap(), 2);
        s.delete("a").unwrap();
        s.insert(&ws("c"), 2, &Quota::default(), None, 1).unwrap();
    }

    #[test]
    fn transitions_set_their_times_crash_and_event() {
        let s = Store::in_memory().unwrap();
        s.insert(&ws("a"), 10, &Quota::default(), None, 1).unwrap();
        s.record("a", Transition::Started { why: "boot" }, 10).unwrap();
        s.record("a", Transition::Crashed { why: "KVM_EXIT_SHUTDOWN" }, 20).unwrap();
        let a = s.get("a").unwrap().unwrap();
        assert_eq!((a.state, a.started_ms, a.stopped_ms, a.crash.as_deref()), (WorkstationState::Crashed, Some(10), Some(20), Some("KVM_EXIT_SHUTDOWN")));
        s.record("a", Transition::Started { why: "again" }, 30).unwrap();
        s.record("a", Transition::Paused, 40).unwrap();
        let a = s.get("a").unwrap().unwrap();
        assert_eq!((a.state, a.started_ms, a.stopped_ms, a.crash), (WorkstationState::Paused, Some(30), Some(20), None));
        let ev: Vec<_> = s.events("a", 10).unwrap().into_iter().map(|e| (e.kind, e.message)).collect();
        assert_eq!(
            ev[1..],
            [("started".into(), "boot".into()), ("crashed".into(), "KVM_EXIT_SHUTDOWN".into()), ("started".into(), "again".into()), ("paused".into(), String::new())]
        );
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("hearth.db");
        Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
        assert!(matches!(Store::open(&path), Err(StoreError::TooNew { found: 99, .. })));
    }
}
