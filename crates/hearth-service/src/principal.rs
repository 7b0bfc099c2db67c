//! Who is asking. Every operation takes a [`Principal`]; what it may see and do is decided
//! here and in the operations, never at an edge. Who a credential belongs to is decided in
//! [`crate::access`].

pub use hearth_proto::api::Scope;

use crate::error::Error;

/// What a principal may do beyond its own workstations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Sees and acts on every workstation, and manages users.
    Admin,
}

/// A caller: a user id, its roles, and what the credential it came with may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub roles: Vec<Role>,
    pub scope: Scope,
}

impl Principal {
    /// A user without roles, with everything a user may do.
    pub fn user(id: impl Into<String>) -> Principal {
        Principal { user: id.into(), roles: Vec::new(), scope: Scope::Write }
    }

    /// An administrator, with everything an administrator may do.
    pub fn admin(id: impl Into<String>) -> Principal {
        Principal { user: id.into(), roles: vec![Role::Admin], scope: Scope::Admin }
    }

    /// The same caller with a credential that may do no more than `scope`.
    pub fn limited_to(mut self, scope: Scope) -> Principal {
        self.scope = self.scope.min(scope);
        self
    }

    /// An administrator acting as one: the role, and a credential that carries it (an
    /// administrator's `write` token acts as a plain user).
    pub fn is_admin(&self) -> bool {
        self.roles.contains(&Role::Admin) && self.scope == Scope::Admin
    }

    /// Whether this caller may see (and so act on) what `owner` owns. What it may not see it
    /// is told does not exist: ids of others' workstations answer "not found", not "forbidden".
    pub fn sees(&self, owner: &str) -> bool {
        self.is_admin() || self.user == owner
    }

    /// Refuses what the credential may not do: a `read` token cannot change anything.
    pub fn may(&self, scope: Scope) -> Result<(), Error> {
        if self.scope >= scope {
            return Ok(());
        }
        Err(Error::Forbidden(format!("this credential is limited to `{}`; this needs `{}`", self.scope.as_str(), scope.as_str())))
    }

    /// Refuses everyone but administrators.
    pub fn must_be_admin(&self) -> Result<(), Error> {
        if self.is_admin() {
            return Ok(());
        }
        Err(Error::Forbidden("only administrators may do this".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_limit_what_a_caller_may_do() {
        let admin = Principal::admin("root");
        assert!(admin.is_admin() && admin.sees("anyone"));
        let as_user = admin.clone().limited_to(Scope::Write);
        assert!(!as_user.is_admin() && !as_user.sees("anyone") && as_user.sees("root"));
        let reader = Principal::user("ann").limited_to(Scope::Admin);
        assert_eq!(reader.scope, Scope::Write, "a token never carries more than its user may");
        let reader = reader.limited_to(Scope::Read);
        assert!(reader.may(Scope::Read).is_ok());
        assert!(matches!(reader.may(Scope::Write), Err(Error::Forbidden(_))));
        assert!(matches!(Principal::user("ann").must_be_admin(), Err(Error::Forbidden(_))));
    }
}
