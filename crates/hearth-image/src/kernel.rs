//! Kernels: Debian's `linux-source-6.1` tarball, our config fragments, `make vmlinux`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::step::Step;
use crate::{tools, ImageError};

/// Where Debian's linux-source package puts the tarball.
pub const SOURCE_TARBALL: &str = "/usr/src/linux-source-6.1.tar.xz";
/// The directory the tarball unpacks to.
pub const SOURCE_DIR: &str = "linux-source-6.1";

pub const GUEST_FRAGMENT: &str = include_str!("../../../images/kernel/guest.config");
pub const BOX_FRAGMENT: &str = include_str!("../../../images/kernel/box.config");

/// The tarball, or an error naming the package that provides it.
pub fn source_tarball() -> Result<PathBuf, ImageError> {
    let p = PathBuf::from(SOURCE_TARBALL);
    if p.exists() {
        Ok(p)
    } else {
        Err(ImageError::MissingTool { tool: SOURCE_TARBALL.into(), package: "linux-source-6.1".into() })
    }
}

/// Unpacks the kernel source into `out`.
pub fn unpack_source(tarball: &Path, out: &Path, step: &Step) -> Result<(), ImageError> {
    tools::require("tar")?;
    tools::require("xz")?;
    step.run("unpack", Command::new("tar").arg("-xJf").arg(tarball).arg("-C").arg(out))
}

/// Configures (`allnoconfig` + fragment), checks every requested option survived, builds
/// vmlinux, and leaves `vmlinux` and `config` in `out`.
pub fn build(source_root: &Path, fragment: &str, out: &Path, step: &Step) -> Result<(), ImageError> {
    for t in ["make", "gcc", "bc", "bison", "flex"] {
        tools::require(t)?;
    }
    tools::require_headers()?;
    let src = source_root.join(SOURCE_DIR);
    let work = out.parent().expect("out has a parent").join("build");
    std::fs::create_dir_all(&work).map_err(|e| ImageError::io("creating the kernel build directory", e))?;
    let frag = work.join("fragment.config");
    std::fs::write(&frag, fragment).map_err(|e| ImageError::io("writing the config fragment", e))?;
    let make = |args: &[&str]| {
        let mut c = Command::new("make");
        c.arg("-C").arg(&src).arg(format!("O={}", work.display())).args(args);
        c
    };
    step.run("allnoconfig", make(&["allnoconfig"]).arg(format!("KCONFIG_ALLCONFIG={}", frag.display())))?;
    let config = std::fs::read_to_string(work.join(".config")).map_err(|e| ImageError::io("reading .config", e))?;
    let dropped = dropped_options(fragment, &config);
    if !dropped.is_empty() {
        return Err(ImageError::Validation {
            artifact: step.artifact.clone(),
            message: format!("allnoconfig dropped options the fragment asks for (a dependency is missing): {}", dropped.join(", ")),
        });
    }
    let jobs = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    step.run("make vmlinux", &mut make(&[&format!("-j{jobs}"), "vmlinux"]))?;
    let vmlinux = work.join("vmlinux");
    check_elf(&vmlinux, &step.artifact)?;
    copy(&vmlinux, &out.join("vmlinux"))?;
    copy(&work.join(".config"), &out.join("config"))
}

/// Options set in the fragment that are not set the same way in the resulting config.
pub fn dropped_options(fragment: &str, config: &str) -> Vec<String> {
    fragment.lines().map(str::trim).filter(|l| l.starts_with("CONFIG_")).filter(|want| !config.lines().any(|have| have.trim() == *want)).map(str::to_string).collect()
}

fn check_elf(path: &Path, artifact: &str) -> Result<(), ImageError> {
    let mut magic = [0u8; 4];
    let ok = std::fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic)).is_ok();
    if ok && magic == *b"\x7fELF" {
        Ok(())
    } else {
        Err(ImageError::Validation { artifact: artifact.into(), message: format!("{} is not an ELF vmlinux", path.display()) })
    }
}

fn copy(from: &Path, to: &Path) -> Result<(), ImageError> {
    std::fs::copy(from, to).map(|_| ()).map_err(|e| ImageError::io(format!("copying {}", from.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_options_are_found() {
        let frag = "CONFIG_A=y\n# comment\nCONFIG_B=y\n";
        assert_eq!(dropped_options(frag, "CONFIG_A=y\n# CONFIG_B is not set\n"), vec!["CONFIG_B=y"]);
        assert!(dropped_options(frag, "CONFIG_B=y\nCONFIG_A=y\n").is_empty());
    }

    #[test]
    fn fragments_carry_what_the_system_needs() {
        for opt in ["SMP", "VIRTIO_MMIO_CMDLINE_DEVICES", "VIRTIO_VSOCKETS", "OVERLAY_FS", "PVH", "VIRTIO_BALLOON", "HW_RANDOM_VIRTIO", "NO_HZ_IDLE", "HIGH_RES_TIMERS"] {
            assert!(GUEST_FRAGMENT.contains(&format!("CONFIG_{opt}=y")), "guest lacks {opt}");
        }
        for opt in ["KVM_AMD", "SECCOMP_FILTER", "TUN", "VETH", "NFT_MASQ", "9P_FS", "VIRTIO_PCI", "CFS_BANDWIDTH", "NO_HZ_IDLE"] {
            assert!(BOX_FRAGMENT.contains(&format!("CONFIG_{opt}=y")), "box lacks {opt}");
        }
    }
}
