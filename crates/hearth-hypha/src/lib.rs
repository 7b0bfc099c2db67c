//! hearth as a Hypha service (docs/hypha.md): a bridge process registers one service with a
//! Hypha server and turns each call into calls of hearth's own API, made as the Hypha user
//! who called (the bridge's key and `X-Hearth-Hypha-Caller`; the server holds that user to
//! what a Hypha sign-in is held to). This crate owns the bridge's Python program, the Python
//! environment it runs in, and its supervision: started, restarted with backoff when it
//! dies, stopped and reaped with the server.
//!
//! Why Python: `hypha-rpc` (PyPI), Hypha's own client library, is the protocol's reference
//! (its msgpack RPC, sessions, callbacks and reconnection move with the server's releases);
//! the bridge stays a thin translation, and every decision (identity, ownership, quotas,
//! audit) is taken by the server it calls.
//!
//! Must not: decide who may do what, or keep state that matters beyond a read cursor.

mod python;
mod supervise;
#[cfg(feature = "testing")]
pub mod testing;

pub use python::{python_env, BRIDGE_PINS};
pub use supervise::{Bridge, BridgeSpec};

/// The bridge's program, written next to the server's data when it starts.
pub const SCRIPT: &str = include_str!("../bridge/hearth_hypha_bridge.py");

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("making the Hypha bridge's Python environment in {dir}: {message}")]
    Env { dir: std::path::PathBuf, message: String },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}
