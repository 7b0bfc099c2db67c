//! Accounts and credentials in the store (`users`, `credentials`; the schema is in
//! `crate::store`'s migrations). Blocking calls, like the rest of the store.

use hearth_proto::api::{Quota, Scope, Token, User};
use rusqlite::{params, OptionalExtension};

use crate::store::{parsed, Store, StoreError};

/// An account's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: String,
    pub email: Option<String>,
    /// The argon2id PHC string; none: no password sign-in.
    pub password: Option<String>,
    pub admin: bool,
    pub disabled: bool,
    pub created_ms: u64,
    /// Limits of this user's own, over their role's (`crate::quota`).
    pub quota: Quota,
}

/// What a credential is for; one is never accepted as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An API token (`Authorization: Bearer`).
    Token,
    /// A browser session (the session cookie).
    Session,
    /// A one-time sign-in link.
    Link,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Token => "token",
            Kind::Session => "session",
            Kind::Link => "link",
        }
    }
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Kind, String> {
        [Kind::Token, Kind::Session, Kind::Link].into_iter().find(|k| k.as_str() == s).ok_or_else(|| format!("unknown credential kind `{s}`"))
    }
}

/// A credential's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRow {
    pub id: String,
    pub kind: Kind,
    pub user: String,
    /// The secret's SHA-256 (`super::secret`).
    pub digest: String,
    pub name: String,
    pub scope: Scope,
    /// Sessions: the token a request that changes something must carry.
    pub csrf: Option<String>,
    pub created_ms: u64,
    pub expires_ms: Option<u64>,
    pub last_used_ms: Option<u64>,
}

impl CredentialRow {
    /// The record of a new credential: its secret's digest, no CSRF token, never used.
    pub fn new(secret: &super::secret::Secret, kind: Kind, user: &str, name: &str, scope: Scope, now_ms: u64, expires_ms: Option<u64>) -> CredentialRow {
        CredentialRow {
            id: secret.id.clone(),
            kind,
            user: user.into(),
            digest: secret.digest(),
            name: name.into(),
            scope,
            csrf: None,
            created_ms: now_ms,
            expires_ms,
            last_used_ms: None,
        }
    }

    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_ms.is_some_and(|e| e <= now_ms)
    }
}

fn quota_json(q: &Quota) -> Option<String> {
    (*q != Quota::default()).then(|| serde_json::to_string(q).expect("quotas serialize"))
}

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        id: r.get("id")?,
        email: r.get("email")?,
        password: r.get("password")?,
        admin: r.get("admin")?,
        disabled: r.get("disabled")?,
        created_ms: r.get("created_ms")?,
        // Unreadable (written by a newer hearth, say): none of its own.
        quota: r.get::<_, Option<String>>("quota")?.and_then(|q| serde_json::from_str(&q).ok()).unwrap_or_default(),
    })
}

fn credential_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CredentialRow> {
    Ok(CredentialRow {
        id: r.get("id")?,
        kind: parsed(r, "kind")?,
        user: r.get("user")?,
        digest: r.get("digest")?,
        name: r.get("name")?,
        scope: parsed(r, "scope")?,
        csrf: r.get("csrf")?,
        created_ms: r.get("created_ms")?,
        expires_ms: r.get("expires_ms")?,
        last_used_ms: r.get("last_used_ms")?,
    })
}

impl Store {
    pub fn users(&self) -> Result<Vec<UserRow>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT * FROM users ORDER BY created_ms, id")?;
        let rows = st.query_map([], user_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn user(&self, id: &str) -> Result<Option<UserRow>, StoreError> {
        Ok(self.conn().query_row("SELECT * FROM users WHERE id = ?1", [id], user_row).optional()?)
    }

    /// Adds an account; false when the id is taken.
    pub fn insert_user(&self, u: &UserRow) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "INSERT OR IGNORE INTO users (id, email, password, admin, disabled, created_ms, quota) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![u.id, u.email, u.password, u.admin, u.disabled, u.created_ms, quota_json(&u.quota)],
        )?;
        Ok(n == 1)
    }

    /// Writes an account's fields back; false when it is gone.
    pub fn save_user(&self, u: &UserRow) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "UPDATE users SET email = ?2, password = ?3, admin = ?4, disabled = ?5, quota = ?6 WHERE id = ?1",
            params![u.id, u.email, u.password, u.admin, u.disabled, quota_json(&u.quota)],
        )?;
        Ok(n == 1)
    }

    /// Removes an account and (by cascade) its credentials, unless it owns workstations or is
    /// the last enabled administrator: `Err(reason)` then, in one transaction.
    pub fn delete_user(&self, id: &str) -> Result<Result<bool, String>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let owned: u64 = tx.query_row("SELECT COUNT(*) FROM workstations WHERE owner = ?1", [id], |r| r.get(0))?;
        if owned > 0 {
            return Ok(Err(format!("`{id}` owns {owned} workstation(s); delete them first")));
        }
        let other_admins: u64 = tx.query_row("SELECT COUNT(*) FROM users WHERE admin AND NOT disabled AND id != ?1", [id], |r| r.get(0))?;
        let is_admin: bool = tx.query_row("SELECT admin AND NOT disabled FROM users WHERE id = ?1", [id], |r| r.get(0)).optional()?.unwrap_or(false);
        if is_admin && other_admins == 0 {
            return Ok(Err(format!("`{id}` is the last administrator")));
        }
        let n = tx.execute("DELETE FROM users WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(Ok(n == 1))
    }

    /// Enabled administrators other than `but`.
    pub fn other_admins(&self, but: &str) -> Result<u64, StoreError> {
        Ok(self.conn().query_row("SELECT COUNT(*) FROM users WHERE admin AND NOT disabled AND id != ?1", [but], |r| r.get(0))?)
    }

    /// Adds a credential, unless its user already holds `max` of its kind (false then).
    pub fn insert_credential(&self, c: &CredentialRow, max: u64) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let held: u64 = tx.query_row("SELECT COUNT(*) FROM credentials WHERE user = ?1 AND kind = ?2", params![c.user, c.kind.as_str()], |r| r.get(0))?;
        if held >= max {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO credentials (id, kind, user, digest, name, scope, csrf, created_ms, expires_ms, last_used_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![c.id, c.kind.as_str(), c.user, c.digest, c.name, c.scope.as_str(), c.csrf, c.created_ms, c.expires_ms, c.last_used_ms],
        )?;
        tx.commit()?;
        Ok(true)
    }

    pub fn credential(&self, id: &str) -> Result<Option<CredentialRow>, StoreError> {
        Ok(self.conn().query_row("SELECT * FROM credentials WHERE id = ?1", [id], credential_row).optional()?)
    }

    /// `user`'s credentials of `kind`, oldest first.
    pub fn credentials(&self, user: &str, kind: Kind) -> Result<Vec<CredentialRow>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT * FROM credentials WHERE user = ?1 AND kind = ?2 ORDER BY created_ms, id")?;
        let rows = st.query_map(params![user, kind.as_str()], credential_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn touch_credential(&self, id: &str, now_ms: u64) -> Result<(), StoreError> {
        self.conn().execute("UPDATE credentials SET last_used_ms = ?2 WHERE id = ?1", params![id, now_ms])?;
        Ok(())
    }

    /// Removes a credential; false when there was none.
    pub fn delete_credential(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.conn().execute("DELETE FROM credentials WHERE id = ?1", [id])? == 1)
    }

    /// Removes `user`'s credentials of `kind`.
    pub fn delete_credentials(&self, user: &str, kind: Kind) -> Result<u64, StoreError> {
        Ok(self.conn().execute("DELETE FROM credentials WHERE user = ?1 AND kind = ?2", params![user, kind.as_str()])? as u64)
    }

    /// Drops expired credentials.
    pub fn prune_credentials(&self, now_ms: u64) -> Result<u64, StoreError> {
        Ok(self.conn().execute("DELETE FROM credentials WHERE expires_ms IS NOT NULL AND expires_ms <= ?1", [now_ms])? as u64)
    }
}

impl From<&UserRow> for User {
    fn from(u: &UserRow) -> User {
        User { id: u.id.clone(), email: u.email.clone(), admin: u.admin, has_password: u.password.is_some(), disabled: u.disabled, created_unix_ms: u.created_ms }
    }
}

impl From<&CredentialRow> for Token {
    fn from(c: &CredentialRow) -> Token {
        Token {
            id: c.id.clone(),
            user: c.user.clone(),
            name: c.name.clone(),
            scope: c.scope,
            created_unix_ms: c.created_ms,
            expires_unix_ms: c.expires_ms,
            last_used_unix_ms: c.last_used_ms,
        }
    }
}
