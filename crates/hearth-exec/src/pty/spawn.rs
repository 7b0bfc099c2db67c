//! Starting a session's command: a PTY pair, the command on it as its controlling terminal
//! (in a session of its own, with default signal actions), as the requested user, with the
//! environment it is given.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use hearth_proto::control::PtySpec;
use nix::fcntl::OFlag;

use crate::refusal::Refusal;
use crate::user;

/// Opens a PTY and starts the session's command on it, as its controlling terminal.
/// `env` is what every command starts with (the server's configured environment); the
/// spec's own env goes on top.
pub(super) fn spawn(spec: &PtySpec, env: &[(String, String)]) -> Result<(OwnedFd, Child, Vec<String>), Refusal> {
    let account = match &spec.user {
        Some(name) => Some(user::lookup(name)?),
        None => None,
    };
    let argv = if spec.argv.is_empty() {
        let shell = account.as_ref().map(|a| a.shell.clone()).filter(|s| !s.is_empty()).unwrap_or_else(|| "/bin/sh".into());
        vec![shell, "-l".into()]
    } else {
        spec.argv.clone()
    };
    let (master, slave) = open_pty(spec.rows, spec.cols).map_err(|e| Refusal::io("opening a pty", &e))?;
    let stdio = || slave.try_clone().map(Stdio::from).map_err(|e| Refusal::io("dup of the pty", &e));
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).env_clear().envs(env.iter().cloned()).env("TERM", "xterm-256color").stdin(stdio()?).stdout(stdio()?).stderr(stdio()?);
    // SAFETY: in the forked child before exec: default signal actions, a new session whose
    // controlling terminal is the PTY on fd 0. sigaction, setsid and ioctl are
    // async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            crate::user::default_signal_actions();
            nix::unistd::setsid()?;
            if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    if let Some(account) = &account {
        user::apply(&mut cmd, account)?;
    }
    cmd.envs(spec.env.iter().cloned());
    if let Some(dir) = &spec.cwd {
        cmd.current_dir(dir);
    }
    // Whatever the cause (a missing binary too), the command was tried and could not run.
    let child = cmd.spawn().map_err(|e| Refusal::failed(format!("cannot run {}: {e}", argv[0])))?;
    Ok((master, child, argv))
}

/// A PTY pair, both ends close-on-exec so no other command inherits them (an inherited slave
/// would keep a session from ever seeing its end).
fn open_pty(rows: u16, cols: u16) -> std::io::Result<(OwnedFd, OwnedFd)> {
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
    nix::pty::grantpt(&master)?;
    nix::pty::unlockpt(&master)?;
    let name = nix::pty::ptsname_r(&master)?;
    let path = CString::new(name).map_err(std::io::Error::other)?;
    let slave = nix::fcntl::open(path.as_c_str(), OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())?;
    // SAFETY: `open` just returned this descriptor and nothing else owns it.
    let slave = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(slave) };
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the descriptor leaves the PtyMaster, which no longer owns it.
    let master = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(master)) };
    Ok((master, slave))
}
