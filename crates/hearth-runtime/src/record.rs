//! A workstation's persisted state: what hearth last made of it, and when.

use serde::{Deserialize, Serialize};

/// Where a workstation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Stopped,
    Running,
    Paused,
    /// Its Firecracker died without being asked to stop; the serial log is kept.
    Crashed,
    /// Its whole VM is in a snapshot in its directory and no Firecracker runs
    /// ([`crate::hibernate`]); a wake goes on where it was.
    Hibernated,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Stopped => "stopped",
            State::Running => "running",
            State::Paused => "paused",
            State::Crashed => "crashed",
            State::Hibernated => "hibernated",
        })
    }
}

/// `state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub state: State,
    pub created_unix_ms: u64,
    pub started_unix_ms: Option<u64>,
    pub stopped_unix_ms: Option<u64>,
    /// How the last stop went (`clean`, `ctrl_alt_del`, `killed`, `not_running`).
    pub last_stop: Option<String>,
    /// Why it is crashed, when it is.
    pub crash: Option<String>,
    /// The uid (and gid) its jailed Firecracker runs as; unique among workstations.
    #[serde(default)]
    pub jail_uid: Option<u32>,
    /// When it hibernated, while it is.
    #[serde(default)]
    pub hibernated_unix_ms: Option<u64>,
}
