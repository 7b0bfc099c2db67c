//! Running a command as a named user: uid, gid, supplementary groups, and the login
//! environment (HOME, USER, LOGNAME, SHELL), as `su -` would set them.

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::process::Command;

use hearth_proto::control::ErrorKind;
use nix::unistd::{Gid, Uid, User};

use crate::refusal::{io_kind, Refusal};

#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

/// Looks a user up in this system's passwd database. A name it does not hold is `invalid`
/// (the request named a user this machine lacks; `not_found` is for what a request acts on).
pub fn lookup(name: &str) -> Result<Account, Refusal> {
    match User::from_name(name) {
        Ok(Some(u)) => {
            Ok(Account { name: u.name, uid: u.uid.as_raw(), gid: u.gid.as_raw(), home: u.dir.to_string_lossy().into_owned(), shell: u.shell.to_string_lossy().into_owned() })
        }
        Ok(None) => Err(Refusal::invalid(format!("no such user `{name}`"))),
        Err(e) => Err(Refusal::new(io_kind(&std::io::Error::from(e)), format!("looking up user `{name}`: {e}"))),
    }
}

/// Makes `cmd` run as `account`, starting in its home unless a cwd is set later.
pub fn apply(cmd: &mut Command, account: &Account) -> Result<(), Refusal> {
    let cname = CString::new(account.name.as_str()).map_err(|_| Refusal::new(ErrorKind::Invalid, "user name contains NUL"))?;
    let (uid, gid) = (Uid::from_raw(account.uid), Gid::from_raw(account.gid));
    cmd.envs([("HOME", account.home.as_str()), ("USER", account.name.as_str()), ("LOGNAME", account.name.as_str()), ("SHELL", account.shell.as_str())])
        // A home that does not exist (nobody's /nonexistent) starts in / instead, as su does.
        .current_dir(if std::path::Path::new(&account.home).is_dir() { account.home.as_str() } else { "/" });
    // A server that is not root can run commands only as itself: asked for that, there is
    // nothing to switch (and initgroups would be refused). Tests serve as their own user.
    let me = nix::unistd::geteuid();
    if !me.is_root() && me.as_raw() == account.uid {
        return Ok(());
    }
    // SAFETY: runs in the forked child before exec; initgroups/setgid/setuid are what every
    // `su` does there. initgroups allocates (it reads /etc/group), which is acceptable here:
    // the child has one thread and nothing else runs in it.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::initgroups(&cname, gid)?;
            nix::unistd::setgid(gid)?;
            nix::unistd::setuid(uid)?;
            Ok(())
        });
    }
    Ok(())
}

/// Sets every signal's action back to the default, in a child before it execs: a signal the
/// server was started with ignored (as `cmd &` in a script starts it with SIGINT and SIGQUIT)
/// would stay ignored in every command and shell it runs, and a shell treats a signal ignored
/// at its start as ignored for good (a terminal's Ctrl-C would then reach nothing). Only
/// sigaction is called: async-signal-safe.
pub(crate) fn default_signal_actions() {
    for sig in 1..32 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: SIG_DFL for a valid signal number; no handler runs.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_exists_and_nobody_else_by_this_name() {
        let root = lookup("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        let missing = lookup("hearth-no-such-user").unwrap_err();
        assert!(missing.kind == ErrorKind::Invalid && missing.message.contains("no such user"), "{missing:?}");
    }
}
