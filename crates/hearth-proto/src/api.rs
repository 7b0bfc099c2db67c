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

/// Whether a workstation's traffic may leave its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Egress {
    /// Masqueraded out of the server's uplink (the internet; not the host, not other
    /// workstations, not private or link-local addresses unless allowed).
    Nat,
    /// Nothing: no packet leaves the workstation's own link.
    None,
}

impl Egress {
    pub fn as_str(self) -> &'static str {
        match self {
            Egress::Nat => "nat",
            Egress::None => "none",
        }
    }
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
    /// Its network egress (default: the server's `network.egress`).
    #[serde(default)]
    pub egress: Option<Egress>,
    /// The image recipe (default: the server's, `datascience`).
    #[serde(default)]
    pub recipe: Option<String>,
    /// Start it right away (default true).
    #[serde(default)]
    pub start: Option<bool>,
    /// Run once at its first boot, as the image's user, in a terminal named `setup` whose
    /// output stays readable (docs/api.md).
    #[serde(default)]
    pub setup: Option<Setup>,
}

/// What a new workstation runs once, at its first boot: extra Python packages (`pip
/// install` into the image's environment), then a script (bash, as the image's user).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Setup {
    /// Requirement specifiers (`pandas==2.2.3`, `requests[socks]`): at most 64.
    #[serde(default)]
    pub python_packages: Vec<String>,
    /// At most 64 KiB.
    #[serde(default)]
    pub script: String,
}

impl Setup {
    pub const MAX_PACKAGES: usize = 64;
    pub const MAX_PACKAGE_LEN: usize = 200;
    pub const MAX_SCRIPT: usize = 64 << 10;
    /// What a requirement specifier may hold besides ASCII letters and digits (which it
    /// starts with): no spaces, quotes or shell characters.
    pub const PACKAGE_PUNCTUATION: &'static str = "-_.[],<>=!~+:/@";

    /// Nothing to run.
    pub fn is_empty(&self) -> bool {
        self.python_packages.is_empty() && self.script.trim().is_empty()
    }

    /// The field and the reason, for a setup over a limit or with a package that is not a
    /// requirement specifier.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.python_packages.len() > Self::MAX_PACKAGES {
            return Err(("setup.python_packages", format!("at most {} packages", Self::MAX_PACKAGES)));
        }
        let ok = |p: &str| {
            (1..=Self::MAX_PACKAGE_LEN).contains(&p.len())
                && p.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
                && p.bytes().all(|b| b.is_ascii_alphanumeric() || Self::PACKAGE_PUNCTUATION.as_bytes().contains(&b))
        };
        if let Some(bad) = self.python_packages.iter().find(|p| !ok(p)) {
            return Err(("setup.python_packages", format!("`{bad}` is not a requirement specifier (a name, extras and versions; no spaces or quotes)")));
        }
        if self.script.len() > Self::MAX_SCRIPT || self.script.contains('\0') {
            return Err(("setup.script", format!("at most {} bytes, no NUL", Self::MAX_SCRIPT)));
        }
        Ok(())
    }

    /// The bash program that does it: the packages installed (each quoted; none holds a
    /// quote), then the script.
    pub fn program(&self) -> String {
        let mut p = String::new();
        if !self.python_packages.is_empty() {
            let pkgs: Vec<String> = self.python_packages.iter().map(|x| format!("'{x}'")).collect();
            p += &format!("echo '== pip install {}'\npython3 -m pip install --disable-pip-version-check {} || exit $?\n", pkgs.join(" ").replace('\'', ""), pkgs.join(" "));
        }
        if !self.script.trim().is_empty() {
            p += "echo '== setup script'\n";
            p += &self.script;
            p += "\n";
        }
        p
    }
}

/// Where a workstation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum WorkstationState {
    Stopped,
    Running,
    Paused,
    /// Its VM died without being asked to stop (`crash` says why); start it again.
    Crashed,
    /// Its directory is gone from the host: it can never run again; delete it.
    Lost,
    /// Its whole VM (memory, processes, terminals) is saved on disk and no VM runs; any
    /// call that needs it (a terminal, an exec, a file, start or resume) wakes it where it was.
    Hibernated,
}

impl WorkstationState {
    pub const ALL: [WorkstationState; 6] =
        [WorkstationState::Stopped, WorkstationState::Running, WorkstationState::Paused, WorkstationState::Crashed, WorkstationState::Lost, WorkstationState::Hibernated];

    pub fn as_str(self) -> &'static str {
        match self {
            WorkstationState::Stopped => "stopped",
            WorkstationState::Running => "running",
            WorkstationState::Paused => "paused",
            WorkstationState::Crashed => "crashed",
            WorkstationState::Lost => "lost",
            WorkstationState::Hibernated => "hibernated",
        }
    }

    /// Whether its VM holds the host's memory and vCPUs.
    pub fn holds_vm(self) -> bool {
        matches!(self, WorkstationState::Running | WorkstationState::Paused)
    }
}

impl std::fmt::Display for WorkstationState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for WorkstationState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WorkstationState::ALL.into_iter().find(|w| w.as_str() == s).ok_or_else(|| format!("unknown workstation state `{s}`"))
    }
}

/// A workstation as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Workstation {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub state: WorkstationState,
    pub vcpu_count: u8,
    pub mem_size_mib: u32,
    pub disk_size_gib: u32,
    pub smt_enabled: bool,
    pub read_only: bool,
    pub bandwidth: Option<Bandwidth>,
    pub recipe: String,
    /// Its network (guest) address; none when it has no network.
    pub address: Option<String>,
    /// Its egress; none when it has no network.
    pub egress: Option<Egress>,
    pub created_unix_ms: u64,
    pub started_unix_ms: Option<u64>,
    pub stopped_unix_ms: Option<u64>,
    /// Why it crashed, when it did.
    pub crash: Option<String>,
    /// The caller's role when it is another user's shared with them (what they may do:
    /// `viewer` attaches terminals in view mode only); absent for its owner and administrators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_as: Option<ShareRole>,
    /// Host memory its Firecracker holds now, MiB (its RSS): in `GET` of one running or
    /// paused workstation; absent in lists and when no VM runs (a hibernated one holds none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmm_rss_mib: Option<u64>,
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

/// One `output` event of a console follow (Server-Sent Events): text the guest printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ConsoleOutput {
    pub text: String,
}

/// The `end` event of a console follow: why it ended (after it, the stream closes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ConsoleEnd {
    pub reason: ConsoleEndReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ConsoleEndReason {
    /// The workstation was deleted.
    Deleted,
    /// The server is stopping (follow again from the next one).
    ServerStopping,
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

/// `POST /api/v1/workstations/{id}/terminals`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateTerminal {
    /// Default 24.
    #[serde(default)]
    pub rows: Option<u16>,
    /// Default 80.
    #[serde(default)]
    pub cols: Option<u16>,
    /// The command; default: the user's login shell.
    #[serde(default)]
    pub argv: Vec<String>,
    /// Default: the image's user (`scientist`).
    #[serde(default)]
    pub user: Option<String>,
}

/// A terminal session in a workstation. It lives in the workstation (its agent), so it
/// survives server restarts and browser reconnects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Terminal {
    pub id: String,
    pub workstation_id: String,
    pub rows: u16,
    pub cols: u16,
    pub argv: Vec<String>,
    pub user: Option<String>,
    pub created_unix_ms: u64,
    /// Clients attached now.
    pub attached: u32,
    pub title: String,
    /// Set once its command ended: `{code, signal}`.
    pub exit_code: Option<i32>,
    pub exit_signal: Option<i32>,
    pub exited: bool,
    /// Set once the session is gone from its workstation (closed, or lost with its VM's stop):
    /// the record is kept a while, the session can no longer be attached.
    pub ended_unix_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct TerminalList {
    pub terminals: Vec<Terminal>,
}

/// Keystrokes or a command for a terminal, typed as if at its keyboard (`\r` is Enter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TerminalInput {
    /// At most 64 KiB.
    pub data: String,
}

/// A terminal's new size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TerminalSize {
    pub rows: u16,
    pub cols: u16,
}

/// A terminal's output from an offset on, for clients that poll instead of attaching a
/// WebSocket: pass `next` as the following read's `after` and every byte comes once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct TerminalOutput {
    /// The output, as UTF-8 (invalid bytes replaced; a character cut at the end is left for
    /// the next read).
    pub data: String,
    /// The offset `data` starts at: past the `after` asked for when the output between was
    /// more than the terminal keeps (1 MiB).
    pub start: u64,
    /// Where the next read goes on from.
    pub next: u64,
    /// Bytes between `after` and `start` no longer kept.
    pub missed: u64,
    /// Its command ended (nothing more will come once `data` is empty).
    pub exited: bool,
}

/// What a terminal's screen shows now, from the workstation's own terminal emulator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct TerminalScreen {
    /// The visible rows joined by `\n`.
    pub text: String,
    pub rows: u16,
    pub cols: u16,
    /// Where the cursor is, 0-based.
    pub cursor_row: u16,
    pub cursor_col: u16,
    pub title: String,
    pub exited: bool,
}

/// The read buffer each end of a WebSocket terminal gives its WebSocket library (tungstenite,
/// under axum on the server). That library zeroes its whole read buffer before every read
/// from the socket, and its default is 128 KiB: a bare axum echo server spent 217,000
/// instructions a round trip of a small message, 97% of them in that memset (callgrind,
/// natively), about a millisecond of CPU on the box's emulated CPU, on the path of every
/// keystroke and its echo; with 4 KiB, 8,900. A read takes at most this much; a larger frame
/// takes several.
pub const WS_READ_BUFFER: usize = 4 << 10;

/// Text frames a WebSocket terminal client sends (binary frames are keystrokes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WsClientMessage {
    Resize { rows: u16, cols: u16 },
    Ping,
}

/// Text frames the server sends on a WebSocket terminal (binary frames are terminal output).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WsServerMessage {
    /// First: the session's size and title; the next binary frames are its scrollback then
    /// its screen (`replay_bytes` of them), then live output.
    Attached {
        rows: u16,
        cols: u16,
        title: String,
        read_only: bool,
        replay_bytes: u64,
    },
    Resize {
        rows: u16,
        cols: u16,
    },
    Exit {
        code: Option<i32>,
        signal: Option<i32>,
    },
    /// This client fell too far behind and is disconnected; reconnect for a fresh screen.
    Lagged,
    Pong,
    Error {
        message: String,
    },
}

// ---- Accounts, sign-in and API tokens ----

/// What a credential may do. A session carries the most its user may (`admin` for admins,
/// else `write`); an API token carries what it was made with, never more than its user may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Look only: lists, details, events, console, downloads, terminals in view mode.
    Read,
    /// Everything on the caller's own workstations.
    Write,
    /// What an administrator may: every workstation, users.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Scope, String> {
        match s {
            "read" => Ok(Scope::Read),
            "write" => Ok(Scope::Write),
            "admin" => Ok(Scope::Admin),
            other => Err(format!("unknown scope `{other}` (read, write or admin)")),
        }
    }
}

/// An account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct User {
    /// The id workstations are owned by: a local account's name.
    pub id: String,
    pub email: Option<String>,
    pub admin: bool,
    /// Whether it can sign in with a password (an account made at first start has none until
    /// one is set).
    pub has_password: bool,
    pub disabled: bool,
    pub created_unix_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct UserList {
    pub users: Vec<User>,
}

/// `POST /api/v1/users` (administrators).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// 1-32 of `a-z 0-9 . _ -`, starting with a letter or digit.
    pub id: String,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub admin: bool,
}

/// `PATCH /api/v1/users/{id}`: what is set changes. A user may change their own password
/// (with `current_password`); the rest is for administrators.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    #[serde(default)]
    pub password: Option<String>,
    /// Needed when users change their own password.
    #[serde(default)]
    pub current_password: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub admin: Option<bool>,
    /// A disabled account cannot sign in and its sessions and tokens stop working.
    #[serde(default)]
    pub disabled: Option<bool>,
}

/// `POST /api/v1/auth/session` (a browser session in a cookie) and `POST /api/v1/auth/token`
/// (an API token, for the CLI and scripts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    pub user: String,
    pub password: String,
    /// For `auth/token`: what the token may do (default `write`).
    #[serde(default)]
    pub scope: Option<Scope>,
    /// For `auth/token`: its name (default `sign-in`).
    #[serde(default)]
    pub name: Option<String>,
    /// For `auth/token`: days until it expires (default 30).
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

/// Who the caller is: `GET /api/v1/auth/session`, and the answer to a sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Session {
    pub user: String,
    pub admin: bool,
    pub scope: Scope,
    /// With a cookie session: send it back as `X-CSRF-Token` on every request that changes
    /// something.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
    /// When this credential stops working (none: it does not expire).
    pub expires_unix_ms: Option<u64>,
}

/// An API token's record (its secret is shown once, when it is made).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Token {
    pub id: String,
    pub user: String,
    pub name: String,
    pub scope: Scope,
    pub created_unix_ms: u64,
    pub expires_unix_ms: Option<u64>,
    pub last_used_unix_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct TokenList {
    pub tokens: Vec<Token>,
}

/// `POST /api/v1/tokens`: a token for the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub name: String,
    /// Default `write`; at most what the caller's own credential may.
    #[serde(default)]
    pub scope: Option<Scope>,
    /// Default 30; 0: it never expires.
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

/// A new token: its record and its secret, which is not stored and not shown again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct NewToken {
    pub token: Token,
    /// `Authorization: Bearer <secret>`.
    pub secret: String,
}

/// `GET /api/v1/auth/methods`: how one may sign in here (what a sign-in page offers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SignInMethods {
    /// Local accounts with a password (always).
    pub password: bool,
    /// The Hypha server whose identities are accepted (`hypha.server_url`), if any.
    pub hypha_server: Option<String>,
}

/// `POST /api/v1/auth/hypha/start`: a login to complete at the Hypha server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct HyphaLogin {
    /// The page to open (a popup): Hypha's login.
    pub login_url: String,
    /// What `auth/hypha/check` asks about.
    pub key: String,
}

/// `POST /api/v1/auth/hypha/check`: whether the login of `key` is complete (then a session
/// starts, as with a password).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HyphaCheck {
    pub key: String,
    /// How long to wait for it, seconds (default 0: answer at once; at most 30).
    #[serde(default)]
    pub wait_secs: Option<u64>,
}

/// The answer of a check whose login is not complete yet (202).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct HyphaPending {
    /// `pending`.
    pub status: String,
}

/// One line of the audit log: who did what to which, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AuditEntry {
    pub id: u64,
    pub at_unix_ms: u64,
    /// Who: a user id (for a failed sign-in, the account tried).
    pub user: String,
    /// `create`, `delete`, `start`, `stop`, `restart`, `pause`, `resume`, `exec`,
    /// `open_terminal`, `attach`, `close_terminal`, `upload`, `download`, `sign_in`,
    /// `sign_in_failed`, `sign_out`, `create_token`, `revoke_token`, `create_user`,
    /// `update_user`, `delete_user`, `set_quota`, `share`, `unshare`.
    pub action: String,
    /// What it was done to: a workstation, token or user id.
    pub target: String,
    /// What else says what happened: a command, a path, a terminal, an address.
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AuditList {
    /// Newest first.
    pub entries: Vec<AuditEntry>,
}

/// A user's quota: how much they may hold at once. In a report's `limits`, null is
/// unlimited; in `overrides` (`PUT /api/v1/users/{id}/quota`), null is their role's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Workstations.
    #[serde(default)]
    pub max_workstations: Option<u64>,
    /// vCPUs over all their workstations.
    #[serde(default)]
    pub max_vcpus: Option<u64>,
    /// Memory over all their workstations, MiB.
    #[serde(default)]
    pub max_mem_mib: Option<u64>,
    /// Own disk over all their workstations, GiB.
    #[serde(default)]
    pub max_disk_gib: Option<u64>,
    /// Commands running at once (exec).
    #[serde(default)]
    pub max_execs: Option<u64>,
}

/// What a user holds now, against their quota.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Usage {
    pub workstations: u64,
    pub vcpus: u64,
    pub mem_mib: u64,
    pub disk_gib: u64,
    pub execs: u64,
}

/// Memory, vCPUs and disk: a host's budget, or what is held of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Resources {
    pub mem_mib: u64,
    pub vcpus: u64,
    pub disk_gib: u64,
}

/// `GET /api/v1/host`: this host's workstation budgets and what is held of them (running and
/// paused workstations their memory and vCPUs, all of them their disks; operations in flight
/// what they will hold), and how many workstations are in each state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct HostStatus {
    pub budget: Resources,
    pub in_use: Resources,
    /// Workstations by state (`running`, `stopped`…); states with none are left out.
    pub workstations: std::collections::BTreeMap<String, u64>,
}

/// `GET /api/v1/users/{id}/quota`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct QuotaReport {
    /// What applies (their overrides over their role's defaults).
    pub limits: Quota,
    /// What an administrator set for this user alone.
    pub overrides: Quota,
    pub usage: Usage,
}

/// What a workstation's owner lets another user do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ShareRole {
    /// See it, its events and console, its terminals (view-only), download files.
    Viewer,
    /// Also use it: terminals (typing), exec, uploads, start, stop, restart, pause, resume.
    /// Not delete it, nor share it.
    Collaborator,
}

impl ShareRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ShareRole::Viewer => "viewer",
            ShareRole::Collaborator => "collaborator",
        }
    }
}

impl std::str::FromStr for ShareRole {
    type Err = String;
    fn from_str(s: &str) -> Result<ShareRole, String> {
        match s {
            "viewer" => Ok(ShareRole::Viewer),
            "collaborator" => Ok(ShareRole::Collaborator),
            other => Err(format!("unknown share role `{other}` (viewer or collaborator)")),
        }
    }
}

/// A workstation shared with a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Share {
    pub user: String,
    pub role: ShareRole,
    pub created_unix_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ShareList {
    pub shares: Vec<Share>,
}

/// `PUT /api/v1/workstations/{id}/shares/{user}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetShare {
    pub role: ShareRole,
}

/// `GET /api/v1/allowlist` (administrators): who may sign in with a Hypha identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AllowList {
    /// From the configuration (`auth.allow_emails`, `--allow-email`): changed only there.
    pub configured: Vec<String>,
    /// Kept by administrators through the API.
    pub managed: Vec<String>,
}

/// `PUT /api/v1/allowlist`: the managed list, replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetAllowList {
    /// Addresses (`ann@lab.org`) and domains (`*@lab.org`). Empty, with none configured:
    /// anyone the Hypha server vouches for.
    pub managed: Vec<String>,
}
