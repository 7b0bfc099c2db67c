//! The workstation's root: the shared base image (read-only, the kernel's root) under an
//! overlay whose upper layer is the workstation's own disk, or memory for a read-only
//! workstation. PID 1 builds it and chroots into it before anything else runs, so every
//! process sees one writable root and the base is never written.

use std::path::Path;

use nix::mount::{mount, MsFlags};

/// Where the layers are mounted before the chroot.
const UPPER_MNT: &str = "/run/hearth/upper";
const LOWER: &str = "/run/hearth/lower";
const NEW_ROOT: &str = "/run/hearth/root";

/// The kernel command line parameters the host passes.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct BootParams {
    /// `hearth.overlay=/dev/vdb` or `hearth.overlay=tmpfs`.
    pub(crate) overlay: Option<String>,
    /// `hearth.hostname=NAME`.
    pub(crate) hostname: Option<String>,
    /// `hearth.net=ADDR/PREFIX,GATEWAY,MTU` (raw; see [`crate::net`]).
    pub(crate) net: Option<String>,
    /// `hearth.dns=IP[,IP…]`.
    pub(crate) dns: Option<String>,
}

pub(crate) fn parse_cmdline(cmdline: &str) -> BootParams {
    let mut p = BootParams::default();
    for word in cmdline.split_whitespace() {
        if let Some(v) = word.strip_prefix("hearth.overlay=") {
            p.overlay = Some(v.to_string());
        } else if let Some(v) = word.strip_prefix("hearth.hostname=") {
            p.hostname = Some(v.to_string());
        } else if let Some(v) = word.strip_prefix("hearth.net=") {
            p.net = Some(v.to_string());
        } else if let Some(v) = word.strip_prefix("hearth.dns=") {
            p.dns = Some(v.to_string());
        }
    }
    p
}

fn mnt(src: &str, target: &str, fstype: Option<&str>, flags: MsFlags, data: Option<&str>) -> Result<(), String> {
    std::fs::create_dir_all(target).map_err(|e| format!("creating {target}: {e}"))?;
    mount(Some(src), target, fstype, flags, data).map_err(|e| format!("mounting {src} on {target}: {e}"))
}

/// Mounts the overlay root and chroots into it. `upper` is a block device or `tmpfs`.
pub(crate) fn enter_overlay_root(upper: &str) -> Result<(), String> {
    if upper == "tmpfs" {
        mnt("tmpfs", UPPER_MNT, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=0755"))?;
    } else {
        mnt(upper, UPPER_MNT, Some("ext4"), MsFlags::MS_NOATIME, None)?;
    }
    for d in ["upper", "work"] {
        std::fs::create_dir_all(Path::new(UPPER_MNT).join(d)).map_err(|e| format!("creating {UPPER_MNT}/{d}: {e}"))?;
    }
    // The base as its own mount point, so the overlay's lower layer is exactly the image.
    mnt("/", LOWER, None, MsFlags::MS_BIND, None)?;
    let opts = format!("lowerdir={LOWER},upperdir={UPPER_MNT}/upper,workdir={UPPER_MNT}/work");
    mnt("overlay", NEW_ROOT, Some("overlay"), MsFlags::empty(), Some(&opts))?;
    nix::unistd::chroot(NEW_ROOT).map_err(|e| format!("chroot {NEW_ROOT}: {e}"))?;
    nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))?;
    Ok(())
}

pub(crate) fn set_hostname(name: &str) -> Result<(), String> {
    nix::unistd::sethostname(name).map_err(|e| format!("sethostname {name}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_host_passes() {
        let p = parse_cmdline("console=ttyS0 quiet hearth.overlay=/dev/vdb hearth.hostname=ws-1 hearth.net=10.0.0.2/30,10.0.0.1,1500 hearth.dns=1.1.1.1 init=/sbin/hearth-agent");
        let want = BootParams { overlay: Some("/dev/vdb".into()), hostname: Some("ws-1".into()), net: Some("10.0.0.2/30,10.0.0.1,1500".into()), dns: Some("1.1.1.1".into()) };
        assert_eq!(p, want);
        assert_eq!(parse_cmdline("quiet"), BootParams::default());
    }
}
