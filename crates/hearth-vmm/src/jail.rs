//! Running Firecracker under its jailer: an unprivileged uid/gid, a chroot holding only what
//! the VM needs, its own cgroup (v2) with memory, CPU and task limits.
//!
//! Layout inside a VM directory when jailed:
//! ```text
//! root -> firecracker/<jail id>/root    the chroot (a symlink, so socket paths stay short)
//! firecracker/<jail id>/root/
//!   firecracker                         the jailer's copy of the binary
//!   api.sock v.sock firecracker.log     what Firecracker makes, as the jail's uid
//!   vmlinux base.ext4 overlay.ext4      empty files with the real ones bind-mounted on them
//!   dev/…                               device nodes the jailer creates
//! ```
//! The bind mounts are made in a private mount namespace created for the jailer just before
//! it runs: they exist only for that process and vanish with it, so nothing is ever left
//! mounted on the host. On stop the chroot is removed (its log moved out first) and the
//! cgroup deleted.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::error::VmmError;

/// The cgroup (under the v2 root) every jailed Firecracker's own cgroup is created in.
pub const PARENT_CGROUP: &str = "hearth";
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The symlink in a VM directory that points at its chroot.
pub(crate) const ROOT_LINK: &str = "root";

/// How to jail one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailConfig {
    pub jailer: PathBuf,
    /// Unique on the host: it names the chroot and the cgroup (`[A-Za-z0-9-]`, ≤ 64).
    pub id: String,
    pub uid: u32,
    pub gid: u32,
    /// cgroup v2 settings, `file=value` (memory.max, cpu.max, pids.max…).
    pub cgroup: Vec<String>,
}

/// A file made visible inside the chroot under `name`.
pub(crate) struct BindFile {
    pub(crate) host: PathBuf,
    pub(crate) name: &'static str,
    /// Firecracker writes it (the overlay disk): it gets the jail's owner.
    pub(crate) writable: bool,
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> VmmError {
    move |source| VmmError::Io { what, source }
}

fn cstring(p: &Path) -> Result<CString, VmmError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| VmmError::Io { what: format!("path {} has a NUL", p.display()), source: std::io::Error::other("NUL in path") })
}

/// Where the chroot of `dir`'s VM is.
pub(crate) fn chroot_of(dir: &Path, cfg: &JailConfig) -> PathBuf {
    dir.join("firecracker").join(&cfg.id).join("root")
}

/// Makes sure the parent cgroup exists and hands its children the controllers the limits use.
fn prepare_parent_cgroup() -> Result<(), VmmError> {
    let parent = Path::new(CGROUP_ROOT).join(PARENT_CGROUP);
    fs::create_dir_all(&parent).map_err(io(format!("creating cgroup {}", parent.display())))?;
    fs::write(parent.join("cgroup.subtree_control"), "+cpu +memory +pids")
        .map_err(io(format!("enabling cpu, memory and pids controllers in {} (are they enabled in {CGROUP_ROOT}/cgroup.subtree_control?)", parent.display())))
}

/// Builds the chroot skeleton and the jailer command for a VM in `dir`. The caller spawns it.
pub(crate) fn command(dir: &Path, cfg: &JailConfig, firecracker: &Path, files: &[BindFile], log_name: &str) -> Result<Command, VmmError> {
    prepare_parent_cgroup()?;
    cleanup(dir, cfg);
    let root = chroot_of(dir, cfg);
    fs::create_dir_all(&root).map_err(io(format!("creating {}", root.display())))?;
    std::os::unix::fs::symlink(root.strip_prefix(dir).expect("root is under dir"), dir.join(ROOT_LINK)).map_err(io("linking the chroot".into()))?;
    let own = |p: &Path| std::os::unix::fs::chown(p, Some(cfg.uid), Some(cfg.gid)).map_err(io(format!("giving {} to the jail's uid", p.display())));
    own(&root)?;
    let log = root.join(log_name);
    fs::File::create(&log).map_err(io(format!("creating {}", log.display())))?;
    own(&log)?;
    let mut mounts = Vec::new();
    for f in files {
        let target = root.join(f.name);
        fs::File::create(&target).map_err(io(format!("creating {}", target.display())))?;
        if f.writable {
            own(&f.host)?;
        }
        mounts.push((cstring(&f.host)?, cstring(&target)?));
    }
    let mut cmd = Command::new(&cfg.jailer);
    cmd.arg("--id").arg(&cfg.id).arg("--exec-file").arg(firecracker);
    cmd.arg("--uid").arg(cfg.uid.to_string()).arg("--gid").arg(cfg.gid.to_string());
    cmd.arg("--chroot-base-dir").arg(dir).args(["--cgroup-version", "2", "--parent-cgroup", PARENT_CGROUP]);
    for c in &cfg.cgroup {
        cmd.arg("--cgroup").arg(c);
    }
    cmd.args(["--", "--api-sock", "/api.sock"]);
    // SAFETY: runs in the forked child before exec, using only syscalls and data prepared
    // before the fork. A mount namespace of its own (private, so nothing propagates back to
    // the host) in which the VM's files are bind-mounted into the chroot; the jailer's own
    // recursive bind of the chroot carries them into the jail.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::mount(std::ptr::null(), c"/".as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            for (src, dst) in &mounts {
                if libc::mount(src.as_ptr(), dst.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    Ok(cmd)
}

/// After the VM is gone: its log moved out of the chroot, the chroot and its cgroup removed.
pub(crate) fn cleanup(dir: &Path, cfg: &JailConfig) {
    cleanup_dir(dir, Some(&cfg.id));
}

/// [`cleanup`] when only the directory is known (a VM re-attached by a later process).
pub(crate) fn cleanup_dir(dir: &Path, id: Option<&str>) {
    let link = dir.join(ROOT_LINK);
    let id = id.map(str::to_string).or_else(|| {
        // root -> firecracker/<id>/root
        fs::read_link(&link).ok().and_then(|t| t.parent().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()))
    });
    let Some(id) = id else { return };
    let root = dir.join("firecracker").join(&id).join("root");
    let _ = fs::rename(root.join("firecracker.log"), dir.join("firecracker.log"));
    let _ = fs::remove_file(&link);
    let _ = fs::remove_dir_all(dir.join("firecracker"));
    let cgroup = Path::new(CGROUP_ROOT).join(PARENT_CGROUP).join(&id);
    // The kernel frees a cgroup's last task a moment after the process is reaped.
    for _ in 0..50 {
        if !cgroup.exists() || fs::remove_dir(&cgroup).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleanup_finds_the_jail_through_its_link_and_removes_it() {
        let d = tempfile::tempdir().unwrap();
        let cfg = JailConfig { jailer: "/j".into(), id: "hearth-test-jail".into(), uid: 1, gid: 1, cgroup: vec![] };
        let root = chroot_of(d.path(), &cfg);
        fs::create_dir_all(root.join("dev")).unwrap();
        fs::write(root.join("firecracker.log"), "last words\n").unwrap();
        std::os::unix::fs::symlink(root.strip_prefix(d.path()).unwrap(), d.path().join(ROOT_LINK)).unwrap();
        assert!(d.path().join(ROOT_LINK).join("dev").is_dir(), "the link resolves");
        cleanup_dir(d.path(), None);
        let left: Vec<_> = fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["firecracker.log"]);
        assert_eq!(fs::read_to_string(d.path().join("firecracker.log")).unwrap(), "last words\n");
    }
}
