//! Host tools the builds need, and the Debian package that provides each.

use std::path::{Path, PathBuf};

use crate::ImageError;

/// Tool -> Debian package.
const PACKAGES: &[(&str, &str)] = &[
    ("make", "make"),
    ("gcc", "gcc"),
    ("bc", "bc"),
    ("bison", "bison"),
    ("flex", "flex"),
    ("tar", "tar"),
    ("xz", "xz-utils"),
    ("cp", "coreutils"),
    ("mmdebstrap", "mmdebstrap"),
    ("mkfs.ext4", "e2fsprogs"),
    ("e2fsck", "e2fsprogs"),
    ("debugfs", "e2fsprogs"),
    ("python3", "python3"),
    ("qemu-system-x86_64", "qemu-system-x86"),
];

/// Headers the kernel build needs (objtool links libelf).
const HEADERS: &[(&str, &str)] = &[("/usr/include/libelf.h", "libelf-dev")];

/// Directories searched besides $PATH: the sbin ones are not on a user's PATH.
const EXTRA_DIRS: &[&str] = &["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

pub fn package_of(tool: &str) -> &'static str {
    PACKAGES.iter().find(|(t, _)| *t == tool).map(|(_, p)| *p).unwrap_or("(unknown package)")
}

/// Finds a tool or fails with one line naming it and its package.
pub fn require(tool: &str) -> Result<PathBuf, ImageError> {
    find(tool).ok_or_else(|| ImageError::MissingTool { tool: tool.into(), package: package_of(tool).into() })
}

pub fn find(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain(EXTRA_DIRS.iter().map(PathBuf::from)).map(|d| d.join(tool)).find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// Checks the kernel build's headers.
pub fn require_headers() -> Result<(), ImageError> {
    for (file, package) in HEADERS {
        if !Path::new(file).exists() {
            return Err(ImageError::MissingTool { tool: (*file).into(), package: (*package).into() });
        }
    }
    Ok(())
}

/// Every tool `hearth image build` and the box need, for `hearth doctor`.
pub fn all_tools() -> impl Iterator<Item = (&'static str, &'static str)> {
    PACKAGES.iter().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tool_names_its_package() {
        let e = require("mmdebstrap-that-does-not-exist").unwrap_err();
        assert_eq!(e.to_string(), "missing host tool `mmdebstrap-that-does-not-exist`: install the Debian package (unknown package)");
        assert_eq!(package_of("mkfs.ext4"), "e2fsprogs");
        assert!(require("sh").is_ok());
    }
}
