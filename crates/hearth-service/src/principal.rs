//! Who is asking. Every operation takes a [`Principal`]; what it may see and do is decided
//! here and in the operations, never at an edge.
//!
//! Until sign-in exists, every edge acts as [`Principal::local_owner`], the one owner of a
//! server that listens on loopback.

/// What a principal may do beyond its own workstations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Sees and acts on every workstation.
    Admin,
}

/// A caller: a user id and its roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub roles: Vec<Role>,
}

impl Principal {
    /// The owner of everything on a server without sign-in.
    pub fn local_owner() -> Principal {
        Principal { user: "local".into(), roles: vec![Role::Admin] }
    }

    pub fn user(id: impl Into<String>) -> Principal {
        Principal { user: id.into(), roles: Vec::new() }
    }

    pub fn is_admin(&self) -> bool {
        self.roles.contains(&Role::Admin)
    }

    /// Whether this caller may see (and so act on) what `owner` owns. What it may not see it
    /// is told does not exist: ids of others' workstations answer "not found", not "forbidden".
    pub fn sees(&self, owner: &str) -> bool {
        self.is_admin() || self.user == owner
    }
}
