//! Quotas: what one user may hold at once (workstations, and their vCPUs, memory and disk
//! summed; commands running), by role (`[quotas.user]`, `[quotas.admin]`) with an
//! administrator's per-user overrides. Creates are held to them in the store's insert
//! transaction (creates at once cannot overshoot); execs by a count kept here.
//!
//! Must not: replace the host's budgets (`crate::admission`): a quota bounds one user, the
//! budget the host; both apply.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hearth_proto::api::{Quota, QuotaReport, Usage};

use crate::access::records::UserRow;
use crate::error::{quota_message, Error};
use crate::principal::{Principal, Role};
use crate::Service;

/// Commands running now, per user.
#[derive(Default)]
pub(crate) struct Running(Arc<Mutex<HashMap<String, u64>>>);

/// One running command's place; given back when dropped.
pub(crate) struct ExecSlot {
    running: Arc<Mutex<HashMap<String, u64>>>,
    user: String,
}

impl Drop for ExecSlot {
    fn drop(&mut self) {
        let mut m = self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = m.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.user);
            }
        }
    }
}

impl Running {
    fn held(&self, user: &str) -> u64 {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(user).copied().unwrap_or(0)
    }
}

/// `own` over `role`: a limit set for the user replaces the role's (0: unlimited).
fn merge(own: Quota, role: Quota) -> Quota {
    let pick = |o: Option<u64>, r: Option<u64>| match o {
        Some(0) => None,
        Some(n) => Some(n),
        None => r,
    };
    Quota {
        max_workstations: pick(own.max_workstations, role.max_workstations),
        max_vcpus: pick(own.max_vcpus, role.max_vcpus),
        max_mem_mib: pick(own.max_mem_mib, role.max_mem_mib),
        max_disk_gib: pick(own.max_disk_gib, role.max_disk_gib),
        max_execs: pick(own.max_execs, role.max_execs),
    }
}

impl Service {
    /// The limits that hold for an account (its role's, under its own), and its own. A
    /// principal without an account (tests, edges that act for one) has its roles' alone.
    fn limits(&self, account: Option<&UserRow>, roles: &[Role]) -> (Quota, Quota) {
        let admin = account.map_or(roles.contains(&Role::Admin), |u| u.admin);
        let role = if admin { &self.config.quotas.admin } else { &self.config.quotas.user };
        let own = account.map(|u| u.quota).unwrap_or_default();
        (merge(own, role.as_quota()), own)
    }

    /// The quota that holds for what `who` creates.
    pub(crate) fn quota_of(&self, who: &Principal) -> Result<Quota, Error> {
        Ok(self.limits(self.store.user(&who.user)?.as_ref(), &who.roles).0)
    }

    /// A place for one more running command of `who`'s, or 403 `quota_exceeded`.
    pub(crate) fn exec_slot(&self, who: &Principal) -> Result<ExecSlot, Error> {
        let max = self.quota_of(who)?.max_execs;
        let mut m = self.execs.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = m.entry(who.user.clone()).or_insert(0);
        if let Some(max) = max.filter(|m| *n >= *m) {
            return Err(Error::QuotaExceeded { limit: "max_execs", message: quota_message("max_execs", max, *n) });
        }
        *n += 1;
        Ok(ExecSlot { running: self.execs.0.clone(), user: who.user.clone() })
    }

    fn report(&self, account: &UserRow) -> Result<QuotaReport, Error> {
        let (limits, overrides) = self.limits(Some(account), &[]);
        let usage = Usage { execs: self.execs.held(&account.id), ..self.store.usage(&account.id)? };
        Ok(QuotaReport { limits, overrides, usage })
    }

    /// A user's quota and what they hold: their own, or anyone's for an administrator.
    pub async fn quota(self: &Arc<Self>, who: &Principal, id: &str) -> Result<QuotaReport, Error> {
        let (who, id) = (who.clone(), id.to_string());
        self.run(move |s| s.report(&s.visible_user(&who, &id)?)).await
    }

    /// Sets a user's own limits (administrators): a field set replaces their role's (0:
    /// unlimited), one left null takes it. What they hold already stays; the next create is
    /// held to the new limits.
    pub async fn set_quota(self: &Arc<Self>, who: &Principal, id: &str, overrides: Quota) -> Result<QuotaReport, Error> {
        who.must_be_admin()?;
        let (by, id) = (who.user.clone(), id.to_string());
        self.run(move |s| {
            let mut u = s.store.user(&id)?.ok_or_else(|| Error::NotFound(format!("no user `{id}`")))?;
            u.quota = overrides;
            if !s.store.save_user(&u)? {
                return Err(Error::NotFound(format!("no user `{id}`")));
            }
            s.audit(&by, "set_quota", &id, &serde_json::to_string(&overrides).unwrap_or_default());
            s.report(&u)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_limits_replace_the_roles() {
        let role = Quota { max_workstations: Some(3), max_vcpus: Some(8), ..Default::default() };
        let own = Quota { max_workstations: Some(5), max_vcpus: Some(0), ..Default::default() };
        let m = merge(own, role);
        assert_eq!((m.max_workstations, m.max_vcpus, m.max_mem_mib), (Some(5), None, None));
    }
}
