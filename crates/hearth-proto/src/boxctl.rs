//! The box control channel: how `hearth box run` asks the box to run a command.
//!
//! The client opens the forwarded TCP port, sends a [`BoxRequest::Hello`] carrying the box's
//! secret token, then one request. A `Run` is answered by a stream of `STDOUT`/`STDERR` frames
//! and ends with a [`BoxEvent::Exited`] control frame. Control messages are JSON in `CONTROL`
//! frames; output is raw bytes.

use serde::{Deserialize, Serialize};

/// Version of this channel; the box refuses a client of another version.
pub const BOX_PROTOCOL_VERSION: u32 = 1;

/// Frame tags.
pub const TAG_CONTROL: u8 = 1;
pub const TAG_STDOUT: u8 = 2;
pub const TAG_STDERR: u8 = 3;

/// Limits on what a client may ask for.
pub const MAX_ARGS: usize = 1024;
pub const MAX_ENV: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BoxRequest {
    Hello { version: u32, token: String },
    Run {
        argv: Vec<String>,
        #[serde(default)]
        env: Vec<(String, String)>,
        #[serde(default)]
        cwd: Option<String>,
        /// Kill the command after this many seconds (none: no limit).
        #[serde(default)]
        timeout_secs: Option<u64>,
    },
    /// Sync and unmount the data disk, then power the box off.
    Shutdown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BoxEvent {
    Hello { version: u32, uptime_ms: u64 },
    Started { pid: u32 },
    /// `code` is set when the command exited, `signal` when a signal ended it.
    Exited { code: Option<i32>, signal: Option<i32>, timed_out: bool },
    ShuttingDown,
    Error { message: String },
}

impl BoxRequest {
    /// Checks the limits a box enforces on a request.
    pub fn validate(&self) -> Result<(), String> {
        if let BoxRequest::Run { argv, env, .. } = self {
            if argv.is_empty() {
                return Err("argv is empty".into());
            }
            if argv.len() > MAX_ARGS {
                return Err(format!("argv has {} entries, at most {MAX_ARGS} allowed", argv.len()));
            }
            if env.len() > MAX_ENV {
                return Err(format!("env has {} entries, at most {MAX_ENV} allowed", env.len()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_stable_json() {
        let r = BoxRequest::Run { argv: vec!["true".into()], env: vec![], cwd: None, timeout_secs: Some(5) };
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(s, r#"{"type":"run","argv":["true"],"env":[],"cwd":null,"timeout_secs":5}"#);
        assert_eq!(serde_json::from_str::<BoxRequest>(r#"{"type":"run","argv":["a"]}"#).unwrap(),
            BoxRequest::Run { argv: vec!["a".into()], env: vec![], cwd: None, timeout_secs: None });
        assert!(serde_json::from_str::<BoxRequest>(r#"{"type":"launch"}"#).is_err());
    }

    #[test]
    fn limits_are_enforced() {
        let run = |n| BoxRequest::Run { argv: vec!["x".into(); n], env: vec![], cwd: None, timeout_secs: None };
        assert!(run(0).validate().is_err());
        assert!(run(1).validate().is_ok());
        assert!(run(MAX_ARGS + 1).validate().is_err());
    }
}
