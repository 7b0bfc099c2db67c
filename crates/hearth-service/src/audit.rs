//! The audit log: who created, started, stopped, deleted, attached to, ran what in which
//! workstation, who signed in (and who failed to), and what was done to accounts and tokens,
//! with when. Written by the operations as they succeed, in the store (the newest
//! [`MAX_ENTRIES`] are kept); read by administrators (everyone's) and users (their own).
//!
//! Must not: fail an operation (a write that fails is logged and the operation stands), or
//! hold a secret (details are commands, paths, ids and addresses; never a password or token).

use std::sync::Arc;

use hearth_proto::api::AuditEntry;
use hearth_proto::unix_ms_now;
use rusqlite::params;

use crate::error::Error;
use crate::principal::Principal;
use crate::store::{Store, StoreError};
use crate::Service;

/// Entries kept (the oldest go first).
pub const MAX_ENTRIES: i64 = 100_000;
/// Longest detail kept, characters (a long command line is cut).
const MAX_DETAIL: usize = 512;
/// Most entries one read returns.
pub const MAX_READ: u32 = 1000;

/// Which entries to read.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub user: Option<String>,
    pub target: Option<String>,
    pub limit: Option<u32>,
}

impl Store {
    pub fn audit_insert(&self, at_ms: u64, user: &str, action: &str, target: &str, detail: &str) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.execute("INSERT INTO audit (at_ms, user, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)", params![at_ms, user, action, target, detail])?;
        let id = conn.last_insert_rowid();
        // Trimmed now and then rather than on every write.
        if id % 1000 == 0 {
            conn.execute("DELETE FROM audit WHERE id <= ?1", [id - MAX_ENTRIES])?;
        }
        Ok(())
    }

    /// The newest entries matching `q`, newest first.
    pub fn audit_read(&self, q: &Query, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT id, at_ms, user, action, target, detail FROM audit
             WHERE (?1 IS NULL OR user = ?1) AND (?2 IS NULL OR target = ?2) ORDER BY id DESC LIMIT ?3",
        )?;
        let rows = st
            .query_map(params![q.user, q.target, limit], |r| {
                Ok(AuditEntry { id: r.get(0)?, at_unix_ms: r.get(1)?, user: r.get(2)?, action: r.get(3)?, target: r.get(4)?, detail: r.get(5)? })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}

/// `detail` cut to [`MAX_DETAIL`] characters.
fn cut(detail: &str) -> String {
    match detail.char_indices().nth(MAX_DETAIL) {
        Some((i, _)) => format!("{}…", &detail[..i]),
        None => detail.to_string(),
    }
}

impl Service {
    /// Records that `user` did `action` to `target`. Blocking (a store write).
    pub(crate) fn audit(&self, user: &str, action: &str, target: &str, detail: &str) {
        if let Err(e) = self.store.audit_insert(unix_ms_now(), user, action, target, &cut(detail)) {
            tracing::warn!(error = %e, user, action, target, "writing the audit log");
        }
    }

    /// The newest audit entries (default 100, at most [`MAX_READ`]): everyone's for an
    /// administrator, else the caller's own.
    pub async fn audit_log(self: &Arc<Self>, who: &Principal, mut q: Query) -> Result<Vec<AuditEntry>, Error> {
        let limit = q.limit.unwrap_or(100);
        if !(1..=MAX_READ).contains(&limit) {
            return Err(Error::invalid("limit", format!("must be 1-{MAX_READ}")));
        }
        if !who.is_admin() {
            if q.user.as_ref().is_some_and(|u| *u != who.user) {
                return Err(Error::Forbidden("only administrators read others' audit entries".into()));
            }
            q.user = Some(who.user.clone());
        }
        self.run(move |s| Ok(s.store.audit_read(&q, limit)?)).await
    }
}
