//! Sharing: an owner lets another user see a workstation (viewer) or use it (collaborator).
//! Every operation asks for a [`Level`] of the workstation it names (`Service::visible`): its
//! owner and administrators have them all; a user it is shared with has their role's; anyone
//! else is told it does not exist.
//!
//! Must not: let a share reach past its workstation (it ends with it, and with its user), or
//! let a collaborator delete or share it.

use std::sync::Arc;

use hearth_proto::api::{Share, ShareRole};
use hearth_proto::unix_ms_now;
use rusqlite::{params, OptionalExtension};

use crate::error::Error;
use crate::principal::{Principal, Scope};
use crate::store::{parsed, Row, Store, StoreError};
use crate::Service;

/// What an operation needs of the workstation it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// See it (a viewer's).
    View,
    /// Use it (a collaborator's).
    Use,
    /// Delete or share it (its owner's, an administrator's).
    Own,
}

fn level_of(role: ShareRole) -> Level {
    match role {
        ShareRole::Viewer => Level::View,
        ShareRole::Collaborator => Level::Use,
    }
}

impl Store {
    pub fn share_of(&self, id: &str, user: &str) -> Result<Option<ShareRole>, StoreError> {
        let conn = self.conn();
        Ok(conn.query_row("SELECT role FROM shares WHERE workstation_id = ?1 AND user = ?2", params![id, user], |r| parsed(r, "role")).optional()?)
    }

    pub fn shares(&self, id: &str) -> Result<Vec<Share>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT user, role, created_ms FROM shares WHERE workstation_id = ?1 ORDER BY created_ms, user")?;
        let rows = st.query_map([id], |r| Ok(Share { user: r.get("user")?, role: parsed(r, "role")?, created_unix_ms: r.get("created_ms")? }))?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Sets `user`'s role on workstation `id` (made or changed).
    pub fn set_share(&self, id: &str, user: &str, role: ShareRole, now_ms: u64) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO shares (workstation_id, user, role, created_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (workstation_id, user) DO UPDATE SET role = excluded.role",
            params![id, user, role.as_str(), now_ms],
        )?;
        self.changed();
        Ok(())
    }

    pub fn unshare(&self, id: &str, user: &str) -> Result<bool, StoreError> {
        let gone = self.conn().execute("DELETE FROM shares WHERE workstation_id = ?1 AND user = ?2", params![id, user])? == 1;
        self.changed();
        Ok(gone)
    }

    /// The ids of the workstations shared with `user`.
    pub fn shared_with(&self, user: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT workstation_id FROM shares WHERE user = ?1")?;
        let rows = st.query_map([user], |r| r.get(0))?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}

impl Service {
    /// The record of workstation `id` if `who` has `need` of it: not found when they have
    /// nothing of it (whether or not it exists), 403 when they see it but may not do this.
    pub(crate) fn visible_as(&self, who: &Principal, id: &str, need: Level) -> Result<Row, Error> {
        let not_found = || Error::NotFound(format!("no workstation `{id}`"));
        let row = self.store.get(id)?.ok_or_else(not_found)?;
        if who.sees(&row.owner) {
            return Ok(row);
        }
        let role = self.store.share_of(id, &who.user)?.ok_or_else(not_found)?;
        if level_of(role) < need {
            let what = if need == Level::Own { "delete or share it" } else { "use it (type, run commands, upload, start or stop)" };
            return Err(Error::Forbidden(format!("`{id}` is shared with you as a {}: you cannot {what}", role.as_str())));
        }
        Ok(row)
    }

    /// Who workstation `id` is shared with (its owner, an administrator).
    pub async fn shares(self: &Arc<Self>, who: &Principal, id: &str) -> Result<Vec<Share>, Error> {
        let (who, id) = (who.clone(), id.to_string());
        self.run(move |s| {
            s.visible_as(&who, &id, Level::Own)?;
            Ok(s.store.shares(&id)?)
        })
        .await
    }

    /// Shares workstation `id` with `user` as `role` (or changes their role).
    pub async fn share(self: &Arc<Self>, who: &Principal, id: &str, user: &str, role: ShareRole) -> Result<Share, Error> {
        who.may(Scope::Write)?;
        let (who, id, user) = (who.clone(), id.to_string(), user.to_string());
        self.run(move |s| {
            let row = s.visible_as(&who, &id, Level::Own)?;
            if s.store.user(&user)?.is_none() {
                return Err(Error::NotFound(format!("no user `{user}`")));
            }
            if user == row.owner {
                return Err(Error::invalid("user", "the owner has it all already"));
            }
            s.store.set_share(&id, &user, role, unix_ms_now())?;
            s.audit(&who.user, "share", &id, &format!("{user} as {}", role.as_str()));
            let shares = s.store.shares(&id)?;
            shares.into_iter().find(|sh| sh.user == user).ok_or_else(|| Error::internal("the share just made is gone"))
        })
        .await
    }

    /// Ends `user`'s share of workstation `id`.
    pub async fn unshare(self: &Arc<Self>, who: &Principal, id: &str, user: &str) -> Result<(), Error> {
        who.may(Scope::Write)?;
        let (who, id, user) = (who.clone(), id.to_string(), user.to_string());
        self.run(move |s| {
            s.visible_as(&who, &id, Level::Own)?;
            if !s.store.unshare(&id, &user)? {
                return Err(Error::NotFound(format!("`{id}` is not shared with `{user}`")));
            }
            s.audit(&who.user, "unshare", &id, &user);
            Ok(())
        })
        .await
    }
}
