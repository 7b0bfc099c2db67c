//! The one error every operation returns. Edges map it: the REST API to an HTTP status and
//! `{"error": {code, message, field?}}` (hearth-server's `api/error.rs`, the only place that
//! knows statuses); other edges carry [`Error::code`] and the message as they can.

use hearth_runtime::RuntimeError;

use crate::network::NetworkError;
use crate::store::StoreError;

/// What is missing when an operation cannot be admitted now (each answers 503 on the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// The host's workstation memory, vCPU or disk budget.
    Memory,
    Vcpus,
    Disk,
    /// Every slot of the network's address range is taken.
    Addresses,
    /// As many console followers as the server allows.
    Followers,
    /// Egress `nat` on a server without an uplink.
    Egress,
    /// The Hypha server identities are checked with does not answer.
    Hypha,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such workstation, terminal or file (also what a caller is told of others').
    #[error("{0}")]
    NotFound(String),
    /// Not in this state (start while running…), or a limit on how many exist.
    #[error("{0}")]
    Conflict(String),
    /// One field of the request out of its limits.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// A request that is wrong as a whole (no one field to name).
    #[error("{0}")]
    BadRequest(String),
    /// Not admitted now, with the reason; trying later (or freeing something) can help.
    #[error("{message}")]
    Unavailable { what: Unavailable, message: String },
    /// A file or body over its size limit.
    #[error("{0}")]
    TooLarge(String),
    /// The caller may see it but not do this to it.
    #[error("{0}")]
    Forbidden(String),
    /// No credential, or one that is not (or no longer) good. Says nothing of why a given
    /// secret failed beyond what the caller can already know.
    #[error("{0}")]
    Unauthenticated(String),
    /// More than the caller's quota allows (`limit` names which: `max_vcpus`…).
    #[error("{message}")]
    QuotaExceeded { limit: &'static str, message: String },
    /// An identity the server's email allowlist does not admit.
    #[error("{0}")]
    NotAllowed(String),
    /// Too many failed sign-ins for this account or from this address lately.
    #[error("too many failed sign-ins; try again in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// Anything else: a bug, the host, the database, a guest that stopped answering.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(field: &str, message: impl Into<String>) -> Error {
        Error::Invalid { field: field.into(), message: message.into() }
    }

    pub fn internal(message: impl Into<String>) -> Error {
        Error::Internal(message.into())
    }

    /// Stable, for programs: what the API's error body carries as `code`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::NotFound(_) => "not_found",
            Error::Conflict(_) => "conflict",
            Error::Invalid { .. } => "invalid_field",
            Error::BadRequest(_) => "bad_request",
            Error::Unavailable { what, .. } => match what {
                Unavailable::Memory | Unavailable::Vcpus | Unavailable::Disk => "over_capacity",
                Unavailable::Addresses => "address_range_exhausted",
                Unavailable::Followers => "too_many_followers",
                Unavailable::Egress => "egress_unavailable",
                Unavailable::Hypha => "hypha_unavailable",
            },
            Error::TooLarge(_) => "payload_too_large",
            Error::Forbidden(_) => "forbidden",
            Error::Unauthenticated(_) => "unauthenticated",
            Error::RateLimited { .. } => "rate_limited",
            Error::NotAllowed(_) => "not_on_allowlist",
            Error::QuotaExceeded { .. } => "quota_exceeded",
            Error::Internal(_) => "internal",
        }
    }

    /// The request field at fault, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::Invalid { field, .. } => Some(field),
            Error::QuotaExceeded { limit, .. } => Some(limit),
            _ => None,
        }
    }
}

impl From<RuntimeError> for Error {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::Invalid { field, message } => Error::invalid(field, message),
            RuntimeError::NotFound(id) => Error::NotFound(format!("no workstation `{id}`")),
            e @ (RuntimeError::Exists(_) | RuntimeError::Conflict { .. }) => Error::Conflict(e.to_string()),
            e => Error::Internal(format!("{e:#}: {}", source_chain(&e))),
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Alloc(a @ hearth_net::AllocError::Exhausted { .. }) => {
                Error::Unavailable { what: Unavailable::Addresses, message: format!("{a}; delete a workstation or configure a larger network.range") }
            }
            StoreError::Quota { limit, max, used } => Error::QuotaExceeded { limit, message: quota_message(limit, max, used) },
            StoreError::Full { max } => Error::Conflict(format!("this server holds at most {max} workstations; delete one first")),
            e => Error::Internal(e.to_string()),
        }
    }
}

/// What a refused create is told: which limit, what it is, what is held.
pub(crate) fn quota_message(limit: &str, max: u64, used: u64) -> String {
    format!("over your quota: {limit} is {max} and you hold {used}; delete or shrink a workstation, or ask an administrator for more")
}

impl From<NetworkError> for Error {
    fn from(e: NetworkError) -> Self {
        Error::Internal(e.to_string())
    }
}

/// A workstation agent's failure as the service's, by the kind of its refusal (the control
/// protocol carries one; an older agent's refusal is `unknown`, a 400 as before kinds
/// existed); a connection or protocol failure is internal.
pub(crate) fn agent_error(e: hearth_exec::ExecError) -> Error {
    use hearth_exec::ErrorKind as K;
    match e {
        hearth_exec::ExecError::Refused { kind, message } => match kind {
            K::NotFound => Error::NotFound(message),
            K::Denied => Error::Forbidden(message),
            K::TooLarge => Error::TooLarge(message),
            // A limit on how many exist (sessions), or a name taken.
            K::Busy | K::Exists => Error::Conflict(message),
            K::Closed => Error::Internal(format!("the workstation's agent: {message}")),
            K::Invalid | K::Failed | K::Unknown => Error::BadRequest(message),
        },
        e => Error::Internal(format!("the workstation's agent: {e}")),
    }
}

/// The causes below an error, joined (boot failures carry the console tail there).
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    parts.join(": ")
}
