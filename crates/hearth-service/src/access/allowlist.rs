//! The email allowlist: who may sign in with an identity from Hypha. The configuration's
//! entries (`auth.allow_emails`) and those administrators keep through the API (in the store)
//! together; both empty: anyone the Hypha server vouches for.

use std::sync::Arc;

use hearth_proto::api::AllowList;
use rusqlite::params;

use crate::config::{email_matches, email_pattern_ok};
use crate::error::Error;
use crate::principal::Principal;
use crate::store::{Store, StoreError};
use crate::Service;

/// Entries kept through the API at most.
pub const MAX_ENTRIES: usize = 1000;

impl Store {
    pub fn allow_emails(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT pattern FROM allow_emails ORDER BY pattern")?;
        let rows = st.query_map([], |r| r.get(0))?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn set_allow_emails(&self, patterns: &[String]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM allow_emails", [])?;
        for p in patterns {
            tx.execute("INSERT OR IGNORE INTO allow_emails (pattern) VALUES (?1)", params![p])?;
        }
        tx.commit()?;
        Ok(())
    }
}

impl Service {
    /// Whether `email` may sign in with a Hypha identity. Blocking (a store read).
    pub(crate) fn email_allowed(&self, email: Option<&str>) -> Result<bool, Error> {
        let managed = self.store.allow_emails()?;
        let configured = &self.config.auth.allow_emails;
        Ok((configured.is_empty() && managed.is_empty()) || email_matches(configured, email) || email_matches(&managed, email))
    }

    /// The allowlist (administrators).
    pub async fn allowlist(self: &Arc<Self>, who: &Principal) -> Result<AllowList, Error> {
        who.must_be_admin()?;
        self.run(|s| Ok(AllowList { configured: s.config.auth.allow_emails.clone(), managed: s.store.allow_emails()? })).await
    }

    /// Replaces the managed part of the allowlist (administrators). Sessions already signed
    /// in stay; the next sign-in (and every Hypha token's next use) is held to it.
    pub async fn set_allowlist(self: &Arc<Self>, who: &Principal, managed: Vec<String>) -> Result<AllowList, Error> {
        who.must_be_admin()?;
        if managed.len() > MAX_ENTRIES {
            return Err(Error::invalid("managed", format!("at most {MAX_ENTRIES} entries")));
        }
        let managed: Vec<String> = managed.iter().map(|p| p.trim().to_ascii_lowercase()).collect();
        if let Some(bad) = managed.iter().find(|p| p.len() > 254 || !email_pattern_ok(p)) {
            return Err(Error::invalid("managed", format!("`{bad}` is neither an address nor *@domain")));
        }
        let by = who.user.clone();
        self.run(move |s| {
            s.store.set_allow_emails(&managed)?;
            s.audit(&by, "set_allowlist", "allowlist", &managed.join(" "));
            Ok(AllowList { configured: s.config.auth.allow_emails.clone(), managed: s.store.allow_emails()? })
        })
        .await
    }
}
