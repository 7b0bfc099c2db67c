//! The crate's one error type. Each variant says what was being done, so a log line or an
//! HTTP error can name the step that failed.

use crate::alloc::AllocError;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A bad range, slot or id, or an exhausted range (the server maps this to 4xx/503).
    #[error(transparent)]
    Alloc(#[from] AllocError),
    /// Setup found something of this workstation or slot already there: nothing was changed.
    #[error("{what} already exists")]
    Exists { what: String },
    /// `init` has not installed the nft table: without it nothing would filter a
    /// workstation's traffic, so setup refuses (fail closed).
    #[error("the nftables table inet hearth is missing: call init first")]
    NotInitialized,
    #[error("{what}: {source}")]
    Netlink { what: String, source: rtnetlink::Error },
    /// nft failed; `detail` is its stderr when it ran (the crate's error alone omits it).
    #[error("{what}: {detail}")]
    Nft { what: String, detail: String },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    /// A caller's value this crate cannot use (an interface name, say).
    #[error("invalid {0}")]
    Invalid(String),
    /// The nft answer did not have the shape this crate wrote.
    #[error("unexpected nft output: {0}")]
    NftOutput(String),
}

impl NetError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetError {
        let what = what.into();
        move |source| NetError::Io { what, source }
    }
    pub(crate) fn errno(what: impl Into<String>) -> impl FnOnce(nix::errno::Errno) -> NetError {
        let what = what.into();
        move |e| NetError::Io { what, source: std::io::Error::from(e) }
    }
    pub(crate) fn netlink(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetError {
        let what = what.into();
        move |source| NetError::Netlink { what, source }
    }
    pub(crate) fn nft(what: impl Into<String>) -> impl FnOnce(nftables::helper::NftablesError) -> NetError {
        let what = what.into();
        move |e| {
            let detail = match &e {
                nftables::helper::NftablesError::NftFailed { stderr, .. } if !stderr.trim().is_empty() => stderr.trim().to_string(),
                _ => e.to_string(),
            };
            NetError::Nft { what, detail }
        }
    }
}

/// The kernel's errno inside a netlink error, if it is one.
pub(crate) fn netlink_errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) if m.raw_code() != 0 => Some(m.raw_code().abs()),
        _ => None,
    }
}
