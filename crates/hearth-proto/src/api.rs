//! The REST API's bodies (v1), shared by the server and the CLI. Documented in the OpenAPI
//! document the server serves at `/api/v1/openapi.json` (the `openapi` feature derives the
//! schemas).

use serde::{Deserialize, Serialize};

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// Bandwidth of a workstation's network, each way (megabits per second).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Bandwidth {
    pub rx_mbps: u32,
    pub tx_mbps: u32,
}

/// `POST /api/v1/workstations`. Unset fields take the server's configured defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateWorkstation {
    pub name: String,
    #[serde(default)]
    pub vcpu_count: Option<u8>,
    #[serde(default)]
    pub mem_size_mib: Option<u32>,
    #[serde(default)]
    pub disk_size_gib: Option<u32>,
    #[serde(default)]
    pub smt_enabled: Option<bool>,
    #[serde(default)]
    pub read_only: Option<bool>,
    #[serde(default)]
    pub bandwidth: Option<Bandwidth>,
    /// The image recipe (default: the server's, `datascience`).
    #[serde(default)]
    pub recipe: Option<String>,
    /// Start it right away (default true).
    #[serde(default)]
    pub start: Option<bool>,
}

/// A workstation as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Workstation {
    pub id: String,
    pub name: String,
    pub owner: String,
    /// `stopped`, `running`, `paused` or `crashed`.
    pub state: String,
    pub vcpu_count: u8,
    pub mem_size_mib: u32,
    pub disk_size_gib: u32,
    pub smt_enabled: bool,
    pub read_only: bool,
    pub bandwidth: Option<Bandwidth>,
    pub recipe: String,
    /// Its network address, once it has one.
    pub address: Option<String>,
    pub created_unix_ms: u64,
    pub started_unix_ms: Option<u64>,
    pub stopped_unix_ms: Option<u64>,
    /// Why it crashed, when it did.
    pub crash: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct WorkstationList {
    pub workstations: Vec<Workstation>,
}

/// `POST /api/v1/workstations/{id}/exec`: a command run to its end, output collected.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    pub argv: Vec<String>,
    #[serde(default)]
    pub env: Vec<(String, String)>,
    #[serde(default)]
    pub cwd: Option<String>,
    /// Default: the image's user (`scientist`).
    #[serde(default)]
    pub user: Option<String>,
    /// Default 60, at most the server's limit.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// Given to the command as its stdin.
    #[serde(default)]
    pub stdin: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ExecResult {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    /// The output went over the server's limit and was cut (the command was killed).
    pub truncated: bool,
    /// Output as UTF-8 (invalid sequences replaced).
    pub stdout: String,
    pub stderr: String,
}

/// One thing that happened to a workstation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Event {
    pub id: i64,
    pub at_unix_ms: u64,
    /// `created`, `started`, `stopped`, `paused`, `resumed`, `crashed`, `start_failed`…
    pub kind: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct EventList {
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Health {
    pub status: String,
    pub version: String,
    pub workstations: u64,
}

/// Every error: `{"error": {"code", "message", "field"?}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ErrorDetail {
    /// Stable, for programs: `bad_request`, `invalid_field`, `not_found`, `conflict`,
    /// `over_capacity`, `payload_too_large`, `internal`.
    pub code: String,
    pub message: String,
    /// The request field at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}
