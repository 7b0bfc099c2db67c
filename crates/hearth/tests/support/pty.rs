//! A command at a terminal of its own, as a user at a terminal runs it: a new pty is its
//! stdin, stdout and controlling terminal (so the kernel signals it SIGWINCH when the
//! window changes). Shared by `cli_e2e` and the attach bench (`#[path]`).

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

/// Sets the window size of the terminal `fd` belongs to (on the pty's master: the kernel
/// signals SIGWINCH to the foreground of its slave).
pub(crate) fn set_window(fd: &OwnedFd, rows: u16, cols: u16) {
    let ws = nix::libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one winsize through the pointer, which outlives the call.
    assert_eq!(unsafe { nix::libc::ioctl(fd.as_raw_fd(), nix::libc::TIOCSWINSZ, &ws) }, 0);
}

/// Spawns `cmd` at a new pty of `rows` x `cols`; returns it and the pty's master.
pub(crate) fn spawn_at_a_pty(cmd: &mut Command, rows: u16, cols: u16) -> (Child, OwnedFd) {
    let pty = nix::pty::openpty(None, None).unwrap();
    set_window(&pty.master, rows, cols);
    cmd.stdin(pty.slave.try_clone().unwrap()).stdout(pty.slave.try_clone().unwrap());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            if nix::libc::ioctl(0, nix::libc::TIOCSCTTY, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap();
    // The child's copies hold the slave open now; the master reads EIO once they are gone.
    drop(pty.slave);
    (child, pty.master)
}
