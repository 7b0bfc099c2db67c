//! The errors of this crate.

use hearth_vmm::VmmError;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A spec field out of its limits; the server maps this to 400 with the field named.
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("no workstation `{0}`")]
    NotFound(String),
    #[error("workstation `{0}` already exists")]
    Exists(String),
    /// The operation does not apply in the current state (start while running…).
    #[error("workstation `{id}` is {state}: cannot {op}")]
    Conflict { id: String, state: String, op: &'static str },
    #[error("{what} failed")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Vmm(#[from] VmmError),
}

impl RuntimeError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RuntimeError {
        let what = what.into();
        move |source| RuntimeError::Io { what, source }
    }
}
