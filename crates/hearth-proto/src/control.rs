//! The control protocol: how a host asks the box or a workstation's agent to do things.
//!
//! Over any byte stream (TCP into the box, vsock into a guest, a unix socket in tests), in
//! [frames](crate::frame). The client's first frame is [`Request::Hello`] (with the token
//! where the server requires one); the server answers [`Event::Hello`] with its version and
//! capabilities. Then one request per connection: `exec` is answered by `started`, output
//! frames (`TAG_STDOUT`, `TAG_STDERR`, raw bytes) and `exited`; `health` by `health`;
//! `shutdown` by `shutting_down`. Control messages are JSON in `TAG_CONTROL` frames.
//! Documented in docs/protocol.md.

use serde::{Deserialize, Serialize};

/// Version of this protocol; a server refuses a client of another version.
pub const PROTOCOL_VERSION: u32 = 1;

/// The guest agent's vsock port for control connections.
pub const AGENT_VSOCK_PORT: u32 = 1024;

/// Frame tags.
pub const TAG_CONTROL: u8 = 1;
pub const TAG_STDOUT: u8 = 2;
pub const TAG_STDERR: u8 = 3;

/// Limits on what a client may ask for.
pub const MAX_ARGS: usize = 1024;
pub const MAX_ENV: usize = 256;
/// Output an exec may produce (stdout + stderr) before it is killed, when the client sets
/// no lower limit.
pub const MAX_OUTPUT_BYTES: u64 = 64 << 20;

/// Capabilities a server may announce in its hello.
pub mod capability {
    pub const EXEC: &str = "exec";
    pub const EXEC_AS_USER: &str = "exec-as-user";
    pub const HEALTH: &str = "health";
    pub const SHUTDOWN: &str = "shutdown";
    pub const SET_TIME: &str = "set-time";
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecSpec {
    pub argv: Vec<String>,
    #[serde(default)]
    pub env: Vec<(String, String)>,
    #[serde(default)]
    pub cwd: Option<String>,
    /// Run as this user (name from the server's /etc/passwd); default: the server's user.
    #[serde(default)]
    pub user: Option<String>,
    /// Kill the command after this many seconds (none: no limit).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// Kill the command once it wrote more than this (capped at [`MAX_OUTPUT_BYTES`]).
    #[serde(default)]
    pub max_output_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    Hello {
        version: u32,
        #[serde(default)]
        token: Option<String>,
    },
    Exec(ExecSpec),
    Health,
    /// Set the machine's wall clock (a guest has no battery-backed clock, and a restored
    /// snapshot wakes with the time it was taken). Answered by `time_set`.
    SetTime {
        unix_ms: u64,
    },
    /// Stop everything, flush and unmount, power off.
    Shutdown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Hello {
        version: u32,
        uptime_ms: u64,
        #[serde(default)]
        capabilities: Vec<String>,
    },
    Started {
        pid: u32,
    },
    /// `code` when the command exited, `signal` when a signal ended it. `truncated`: it was
    /// killed for writing more than its output limit.
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
        timed_out: bool,
        #[serde(default)]
        truncated: bool,
    },
    Health {
        uptime_ms: u64,
        mem_available_kib: u64,
        load1: f64,
    },
    TimeSet,
    ShuttingDown,
    Error {
        message: String,
    },
}

impl ExecSpec {
    pub fn new(argv: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self { argv: argv.into_iter().map(Into::into).collect(), ..Self::default() }
    }

    /// The output limit in force: the client's, never above [`MAX_OUTPUT_BYTES`].
    pub fn output_limit(&self) -> u64 {
        self.max_output_bytes.unwrap_or(MAX_OUTPUT_BYTES).min(MAX_OUTPUT_BYTES)
    }

    /// Checks the limits a server enforces.
    pub fn validate(&self) -> Result<(), String> {
        if self.argv.is_empty() || self.argv[0].is_empty() {
            return Err("argv is empty".into());
        }
        if self.argv.len() > MAX_ARGS {
            return Err(format!("argv has {} entries, at most {MAX_ARGS} allowed", self.argv.len()));
        }
        if self.env.len() > MAX_ENV {
            return Err(format!("env has {} entries, at most {MAX_ENV} allowed", self.env.len()));
        }
        if self.env.iter().any(|(k, _)| k.is_empty() || k.contains('=')) {
            return Err("env names must be non-empty and contain no `=`".into());
        }
        Ok(())
    }
}

// `Eq` for Event: f64 in Health is never NaN (a load average).
impl Eq for Event {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_stable_json() {
        let r = Request::Exec(ExecSpec { timeout_secs: Some(5), ..ExecSpec::new(["true"]) });
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(
            s,
            r#"{"type":"exec","argv":["true"],"env":[],"cwd":null,"user":null,"timeout_secs":5,"max_output_bytes":null}"#
        );
        assert_eq!(serde_json::from_str::<Request>(r#"{"type":"exec","argv":["a"]}"#).unwrap(), Request::Exec(ExecSpec::new(["a"])));
        assert_eq!(serde_json::from_str::<Request>(r#"{"type":"hello","version":1}"#).unwrap(), Request::Hello { version: 1, token: None });
        assert!(serde_json::from_str::<Request>(r#"{"type":"launch"}"#).is_err());
    }

    #[test]
    fn limits_are_enforced() {
        let n = |n| ExecSpec::new(vec!["x"; n]);
        assert!(n(0).validate().is_err());
        assert!(n(1).validate().is_ok());
        assert!(n(MAX_ARGS + 1).validate().is_err());
        let bad_env = ExecSpec { env: vec![("A=B".into(), "c".into())], ..n(1) };
        assert!(bad_env.validate().is_err());
        assert_eq!(ExecSpec { max_output_bytes: Some(u64::MAX), ..n(1) }.output_limit(), MAX_OUTPUT_BYTES);
    }
}
