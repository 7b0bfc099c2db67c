//! Root filesystems: mmdebstrap a Debian tree from a recipe, then `mkfs.ext4 -d` it.
//!
//! Two stages, two artifacts: the base image (everything the recipe says) is slow and only
//! changes with the recipe; the final guest image is the base plus the `hearth-agent` binary,
//! written in with debugfs in seconds, so rebuilding the agent never rebuilds Debian.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::recipe::Recipe;
use crate::step::{shell_quote, Step, STEP_MARKER};
use crate::{tools, ImageError};

/// Where the agent lives in a guest image (the kernel's `init=`; /sbin links to /usr/sbin).
pub const AGENT_PATH: &str = "/usr/sbin/hearth-agent";
/// The staging directory inside the chroot while hooks run.
const STAGE_IN_CHROOT: &str = "/tmp/hearth-recipe";

/// The host's CA bundle, staged for pip during the build only: hosts behind a TLS-inspecting
/// proxy trust a CA that a fresh Debian tree does not. It does not stay in the image.
const HOST_CA: &str = "host-ca.crt";

fn host_ca_bundle() -> Option<PathBuf> {
    ["PIP_CERT", "SSL_CERT_FILE"].iter().filter_map(std::env::var_os).map(PathBuf::from).chain([PathBuf::from("/etc/ssl/certs/ca-certificates.crt")]).find(|p| p.is_file())
}

/// The host's apt sources, handed to mmdebstrap: we never hard-code a mirror.
pub fn host_apt_sources() -> Result<Vec<PathBuf>, ImageError> {
    let mut found = Vec::new();
    let main = PathBuf::from("/etc/apt/sources.list");
    if std::fs::read_to_string(&main).is_ok_and(|s| s.lines().any(|l| l.trim_start().starts_with("deb "))) {
        found.push(main);
    }
    let mut extra: Vec<PathBuf> = std::fs::read_dir("/etc/apt/sources.list.d")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "list" || x == "sources"))
        .collect();
    extra.sort();
    found.extend(extra);
    if found.is_empty() {
        return Err(ImageError::Validation { artifact: "rootfs".into(), message: "no apt sources on this host (/etc/apt/sources.list or sources.list.d)".into() });
    }
    Ok(found)
}

/// Builds the recipe's tree with mmdebstrap and turns it into `out/rootfs.ext4`.
pub fn build_base(recipe: &Recipe, sources: &[PathBuf], out: &Path, step: &Step) -> Result<(), ImageError> {
    let mmdebstrap = tools::require("mmdebstrap")?;
    tools::require("mkfs.ext4")?;
    tools::require("e2fsck")?;
    let work = out.parent().expect("out has a parent");
    let stage = work.join("stage");
    let tree = work.join("tree");
    std::fs::create_dir_all(&stage).map_err(|e| ImageError::io("creating the stage directory", e))?;
    for (name, data) in &recipe.files {
        std::fs::write(stage.join(name), data).map_err(|e| ImageError::io(format!("staging {name}"), e))?;
    }
    let host_ca = host_ca_bundle();
    if let Some(ca) = &host_ca {
        std::fs::copy(ca, stage.join(HOST_CA)).map_err(|e| ImageError::io(format!("staging {}", ca.display()), e))?;
    }
    let spec = &recipe.spec;
    let mut cmd = Command::new(mmdebstrap);
    cmd.args(["--mode=root", "--format=directory", &format!("--variant={}", spec.variant)]);
    if !spec.packages.is_empty() {
        cmd.arg(format!("--include={}", spec.packages.join(",")));
    }
    for hook in customize_hooks(recipe, &stage, host_ca.is_some()) {
        cmd.arg(format!("--customize-hook={hook}"));
    }
    cmd.arg(&spec.suite).arg(&tree).args(sources);
    step.run("mmdebstrap", &mut cmd)?;
    // The build borrowed the host's resolver and name; the guest gets its own at boot.
    for f in ["etc/resolv.conf", "etc/hostname"] {
        let _ = std::fs::remove_file(tree.join(f));
    }
    make_ext4(&tree, &out.join("rootfs.ext4"), &recipe.spec.name, step)?;
    fsck(&out.join("rootfs.ext4"), step)
}

/// Host variables a build inside the chroot may need to reach the network (proxies, a pip
/// index). Nothing else of the host's environment leaks into an image build.
const PASSED_ENV: &[&str] =
    &["http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_DEFAULT_TIMEOUT"];

/// `chroot "$1" env -i …`: commands in the image get a clean, explicit environment.
/// (The host's REQUESTS_CA_BUNDLE, say, names a file that in the chroot is a different
/// bundle, and requests lets it override pip's --cert.)
fn chroot_env(host_ca: bool) -> String {
    let mut vars = vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(), "HOME=/root".into(), "LANG=C.UTF-8".into()];
    for name in PASSED_ENV {
        if let Ok(v) = std::env::var(name) {
            vars.push(shell_quote(&format!("{name}={v}")));
        }
    }
    if host_ca {
        let ca = format!("{STAGE_IN_CHROOT}/{HOST_CA}");
        for name in ["PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"] {
            vars.push(format!("{name}={ca}"));
        }
    }
    format!("chroot \"$1\" env -i {}", vars.join(" "))
}

/// The mmdebstrap hooks, in order. Each announces its step so a failure names it.
fn customize_hooks(recipe: &Recipe, stage: &Path, host_ca: bool) -> Vec<String> {
    let spec = &recipe.spec;
    let step = |name: &str, body: String| format!("echo '{STEP_MARKER}{name}' >&2; set -e; {body}");
    let staged = |f: &str| format!("{STAGE_IN_CHROOT}/{f}");
    let chroot = chroot_env(host_ca);
    let mut hooks = vec![step("stage", format!("mkdir -p \"$1{STAGE_IN_CHROOT}\"; cp -a {}/. \"$1{STAGE_IN_CHROOT}/\"", shell_quote(&stage.to_string_lossy())))];
    if let Some(u) = &spec.user {
        hooks.push(step("user", format!("{chroot} useradd --create-home --uid {} --user-group --shell /bin/bash {}", u.uid, shell_quote(&u.name))));
    }
    if let Some(req) = &spec.requirements {
        hooks.push(step(
            "venv",
            format!(
                "{chroot} python3 -m venv /opt/venv; \
                 {chroot} /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-input -r {}; \
                 printf 'export PATH=/opt/venv/bin:$PATH\\n' > \"$1/etc/profile.d/10-hearth-venv.sh\"",
                shell_quote(&staged(req))
            ),
        ));
    }
    for f in &spec.files {
        hooks.push(step("files", format!("install -D -m {} \"$1\"{} \"$1\"{}", f.mode, shell_quote(&staged(&f.source)), shell_quote(&f.dest))));
    }
    if let Some(hook) = &spec.hook {
        hooks.push(step("hook", format!("{chroot} sh -e {}", shell_quote(&staged(hook)))));
    }
    if let Some(check) = &spec.check {
        hooks.push(step("check", format!("{chroot} sh -c {}", shell_quote(check))));
    }
    hooks.push(step("cleanup", format!("rm -rf \"$1{STAGE_IN_CHROOT}\"")));
    hooks
}

/// `mkfs.ext4 -d`: an image sized to the tree plus headroom, no journal (it is mounted
/// read-only by every guest; writes go to each workstation's own overlay disk).
fn make_ext4(tree: &Path, image: &Path, label: &str, step: &Step) -> Result<(), ImageError> {
    let (bytes, inodes) = tree_usage(tree);
    let size = (bytes + bytes / 8 + (128 << 20)).div_ceil(1 << 20) << 20;
    let f = std::fs::File::create(image).map_err(|e| ImageError::io("creating the image", e))?;
    f.set_len(size).map_err(|e| ImageError::io("sizing the image", e))?;
    drop(f);
    step.run(
        "mkfs.ext4",
        Command::new(tools::require("mkfs.ext4")?)
            .args(["-q", "-F", "-O", "^has_journal", "-E", "root_owner=0:0", "-L"])
            .arg(&label[..label.len().min(16)])
            .args(["-N", &(inodes + inodes / 4 + 4096).to_string(), "-d"])
            .arg(tree)
            .arg(image),
    )
}

pub fn fsck(image: &Path, step: &Step) -> Result<(), ImageError> {
    step.run("e2fsck", Command::new(tools::require("e2fsck")?).arg("-fn").arg(image))
}

/// (bytes rounded up to 4 KiB blocks, inode count) of a tree, not following symlinks.
fn tree_usage(dir: &Path) -> (u64, u64) {
    let mut usage = (0, 1);
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(md) = std::fs::symlink_metadata(e.path()) else { continue };
        usage.1 += 1;
        usage.0 += md.size().div_ceil(4096) * 4096;
        if md.is_dir() {
            let (b, i) = tree_usage(&e.path());
            usage.0 += b;
            usage.1 += i;
        }
    }
    usage
}

/// The guest image: a sparse copy of the base with the agent written in at [`AGENT_PATH`].
pub fn add_agent(base: &Path, agent: &Path, out: &Path, step: &Step) -> Result<(), ImageError> {
    let debugfs = tools::require("debugfs")?;
    let image = out.join("rootfs.ext4");
    step.run("copy", Command::new(tools::require("cp")?).arg("--sparse=always").arg(base).arg(&image))?;
    let (dir, name) = AGENT_PATH.rsplit_once('/').expect("absolute path");
    let script = out.parent().expect("out has a parent").join("debugfs.cmds");
    let cmds = format!("cd {dir}\nwrite {} {name}\nsif {name} mode 0100755\nsif {name} uid 0\nsif {name} gid 0\n", agent.display());
    std::fs::write(&script, cmds).map_err(|e| ImageError::io("writing the debugfs script", e))?;
    step.run("debugfs write", Command::new(&debugfs).arg("-w").arg("-f").arg(&script).arg(&image))?;
    fsck(&image, step)?;
    // debugfs exits 0 even when a command fails: check the result itself.
    let out = Command::new(&debugfs).args(["-R", &format!("stat {AGENT_PATH}")]).arg(&image).output().map_err(|e| ImageError::io("running debugfs stat", e))?;
    let stat = String::from_utf8_lossy(&out.stdout);
    let size = std::fs::metadata(agent).map_err(|e| ImageError::io("reading the agent binary", e))?.len();
    let executable = stat.contains("Mode:  0755") && stat.contains("Type: regular");
    if !executable || !stat.contains(&format!("Size: {size}")) {
        return Err(ImageError::Validation {
            artifact: step.artifact.clone(),
            message: format!("{AGENT_PATH} is not a {size}-byte executable in the image: {}", stat.lines().take(3).collect::<Vec<_>>().join(" | ")),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_follow_the_recipe_in_order() {
        let r = Recipe::datascience();
        let hooks = customize_hooks(&r, Path::new("/x/stage"), true);
        assert!(hooks.iter().any(|h| h.contains("env -i") && h.contains("REQUESTS_CA_BUNDLE=/tmp/hearth-recipe/host-ca.crt")));
        let steps: Vec<&str> = hooks.iter().map(|h| h.split(STEP_MARKER).nth(1).unwrap().split('\'').next().unwrap()).collect();
        assert_eq!(steps, ["stage", "user", "venv", "hook", "check", "cleanup"]);
        let b = customize_hooks(&Recipe::box_root(), Path::new("/x"), false);
        assert!(b.iter().any(|h| h.contains("install -D -m 0755") && h.contains("'/init'")));
    }

    #[test]
    fn host_sources_exist_here() {
        assert!(!host_apt_sources().unwrap().is_empty());
    }
}
