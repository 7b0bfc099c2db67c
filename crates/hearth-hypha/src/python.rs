//! The Python environment the bridge runs in: a venv with pinned `hypha-rpc`, made once
//! under the artifact cache and named by the hash of its pins and the host's Python, or a
//! Python the configuration names (which must have `hypha-rpc`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::BridgeError;

/// What the bridge's venv installs (hypha-rpc's own dependencies include httpx, which the
/// bridge uses to call hearth).
pub const BRIDGE_PINS: &[&str] = &["hypha-rpc==0.21.47"];

/// The Python to run the bridge with: `given`, or the cached venv (made now if missing,
/// which downloads from PyPI; progress goes to stderr).
pub fn python_env(cache_dir: &Path, given: Option<&Path>) -> Result<PathBuf, BridgeError> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    let version = run(Command::new("python3").args(["-c", "import sys; print(sys.version)"]), cache_dir)?;
    let mut h = Sha256::new();
    for p in BRIDGE_PINS {
        h.update(p.as_bytes());
        h.update(b"\n");
    }
    h.update(version.as_bytes());
    let dir = cache_dir.join(format!("hypha-bridge-venv-{}", &hex::encode(h.finalize())[..16]));
    let python = dir.join("bin/python");
    // A venv hard-codes its path, so it is made in place; `.complete` marks one that finished.
    if python.is_file() && dir.join(".complete").is_file() {
        return Ok(python);
    }
    eprintln!("hearth: making the Hypha bridge's Python environment in {} (pip install {})", dir.display(), BRIDGE_PINS.join(" "));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(cache_dir).map_err(|e| BridgeError::Io { what: format!("creating {}", cache_dir.display()), source: e })?;
    run(Command::new("python3").arg("-m").arg("venv").arg(&dir), &dir)?;
    run(Command::new(&python).args(["-m", "pip", "install", "-q", "--disable-pip-version-check"]).args(BRIDGE_PINS), &dir)?;
    std::fs::write(dir.join(".complete"), b"").map_err(|e| BridgeError::Io { what: "marking the venv complete".into(), source: e })?;
    Ok(python)
}

/// Runs `cmd` to its end: its stdout, or an error with its stderr's end.
fn run(cmd: &mut Command, dir: &Path) -> Result<String, BridgeError> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| BridgeError::Env { dir: dir.into(), message: format!("running {cmd:?}: {e} (is python3 with venv installed?)") })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: String = err.chars().rev().take(2000).collect::<Vec<_>>().into_iter().rev().collect();
        return Err(BridgeError::Env { dir: dir.into(), message: format!("{cmd:?} failed ({}): {tail}", out.status) });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
