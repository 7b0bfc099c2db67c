//! Named network namespaces, made the way iproute2 makes them, and running code in one.
//!
//! A named netns is a file `<dir>/<name>` with the namespace bind-mounted on it: it lives
//! while that mount does, without any process in it, and Firecracker is later started in it
//! by opening the file (`hearth-vmm`'s `NetConfig::netns`). Network namespaces belong to
//! threads: everything here that enters one does so on a thread of its own, so the
//! caller's thread never changes namespace.

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::NetError;

/// The calling thread's network namespace (the one it is in now).
pub fn current() -> Result<File, NetError> {
    File::open("/proc/thread-self/ns/net").map_err(NetError::io("opening /proc/thread-self/ns/net"))
}

/// Runs `f` on a new thread that has entered `ns`; child processes it starts (nft) and
/// sockets it opens are in `ns` too (a socket keeps its namespace when handed elsewhere).
pub fn run_in<T: Send>(ns: BorrowedFd<'_>, f: impl FnOnce() -> T + Send) -> Result<T, NetError> {
    on_thread(move || {
        setns(ns, CloneFlags::CLONE_NEWNET).map_err(NetError::errno("entering a network namespace"))?;
        Ok(f())
    })
}

/// Runs `f` on a new thread in a new, empty network namespace, which goes away with the
/// thread unless something `f` made keeps it (a bind mount, an open fd, a process).
/// Tests use it as a stand-in for the host's root namespace.
pub fn run_in_new<T: Send>(f: impl FnOnce() -> T + Send) -> Result<T, NetError> {
    on_thread(move || {
        unshare(CloneFlags::CLONE_NEWNET).map_err(NetError::errno("unsharing a network namespace"))?;
        Ok(f())
    })
}

fn on_thread<T: Send>(f: impl FnOnce() -> Result<T, NetError> + Send) -> Result<T, NetError> {
    std::thread::scope(|s| s.spawn(f).join().unwrap_or_else(|_| Err(NetError::Io { what: "a network namespace thread panicked".into(), source: ErrorKind::Other.into() })))
}

/// Makes `dir` a shared mount, as iproute2 does for /run/netns: a netns mount made here
/// later also shows (and, on delete, goes away) in mount namespaces copied from ours —
/// otherwise such a copy would keep a deleted workstation's namespace, and its tap, alive.
fn share_dir(dir: &Path) -> Result<(), NetError> {
    fs::create_dir_all(dir).map_err(NetError::io(format!("creating {}", dir.display())))?;
    let shared = || mount(None::<&str>, dir, None::<&str>, MsFlags::MS_SHARED | MsFlags::MS_REC, None::<&str>);
    match shared() {
        Ok(()) => Ok(()),
        // Not a mount point yet: bind it onto itself, then share it.
        Err(Errno::EINVAL) => {
            mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                .map_err(NetError::errno(format!("bind-mounting {} onto itself", dir.display())))?;
            shared().map_err(NetError::errno(format!("making {} a shared mount", dir.display())))
        }
        Err(e) => Err(NetError::errno(format!("making {} a shared mount", dir.display()))(e)),
    }
}

/// Creates the named netns `path` (`Exists` if the file is there) and returns it open.
pub fn create(path: &Path) -> Result<File, NetError> {
    share_parent(path)?;
    run_in_new(|| bind(path))??;
    open(path)
}

/// Names the calling thread's namespace `path` (tests name their stand-in root this way,
/// so other threads can enter it by path).
pub fn bind_current(path: &Path) -> Result<(), NetError> {
    share_parent(path)?;
    bind(path)
}

fn share_parent(path: &Path) -> Result<(), NetError> {
    path.parent().map_or(Ok(()), share_dir)
}

/// Bind-mounts the calling thread's namespace onto a new file `path`.
fn bind(path: &Path) -> Result<(), NetError> {
    let what = || format!("netns {}", path.display());
    match OpenOptions::new().write(true).create_new(true).mode(0o444).open(path) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Err(NetError::Exists { what: what() }),
        Err(e) => return Err(NetError::io(format!("creating {}", what()))(e)),
    }
    // thread-self, not self: /proc/self is the main thread, maybe in another namespace.
    let r = mount(Some("/proc/thread-self/ns/net"), path, None::<&str>, MsFlags::MS_BIND, None::<&str>);
    r.map_err(|e| {
        let _ = fs::remove_file(path);
        NetError::errno(format!("bind-mounting {}", what()))(e)
    })
}

/// Opens a named netns for entering.
pub fn open(path: &Path) -> Result<File, NetError> {
    File::open(path).map_err(NetError::io(format!("opening netns {}", path.display())))
}

/// Deletes a named netns: unmount, unlink. Nothing there is fine. The kernel frees the
/// namespace (and its tap and veth end) once nothing else holds it.
pub fn delete(path: &Path) -> Result<(), NetError> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(NetError::errno(format!("unmounting netns {}", path.display()))(e)),
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(NetError::io(format!("removing netns {}", path.display()))(e)),
    }
}

/// Names of the entries of `dir` starting with `prefix` (none if `dir` is missing).
pub(crate) fn list(dir: &Path, prefix: &str) -> Result<Vec<String>, NetError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(NetError::io(format!("listing {}", dir.display()))(e)),
    };
    let mut names: Vec<String> = entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| n.starts_with(prefix)).collect();
    names.sort();
    Ok(names)
}
