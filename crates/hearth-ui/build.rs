//! Bundles the web UI (`ui/` at the workspace root) with its own pinned esbuild and embeds
//! the result: `npm ci` when `ui/node_modules` is missing or older than the lockfile, then
//! `node ui/build.mjs --outdir $OUT_DIR/ui`, which also holds the page to its size budget.
//! Node.js and npm come from the host (`scripts/deps.sh` installs them).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let ui = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../../ui");
    let ui = ui.canonicalize().unwrap_or_else(|e| panic!("the UI's sources ({}): {e}", ui.display()));
    for f in ["src", "build.mjs", "index.html", "favicon.svg", "package.json", "package-lock.json"] {
        println!("cargo:rerun-if-changed={}", ui.join(f).display());
    }
    let lock = ui.join("package-lock.json");
    let installed = ui.join("node_modules/.package-lock.json");
    if modified(&installed) < modified(&lock) {
        run(Command::new("npm").args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]).current_dir(&ui), "npm ci (the UI's packages)");
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("ui");
    run(Command::new("node").arg(ui.join("build.mjs")).arg("--outdir").arg(&out).current_dir(&ui), "node ui/build.mjs (bundling the UI)");

    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).expect("build.mjs wrote its manifest")).expect("the manifest is JSON");
    let mut code = String::from("/// Every asset of the UI, from ui/build.mjs's manifest.\npub static ASSETS: &[Asset] = &[\n");
    for a in manifest["assets"].as_array().expect("assets") {
        let file = out.join(a["file"].as_str().expect("file"));
        code.push_str(&format!(
            "    Asset {{ path: {:?}, content_type: {:?}, body: include_bytes!({:?}), gzip: include_bytes!({:?}) }},\n",
            a["path"].as_str().expect("path"),
            a["type"].as_str().expect("type"),
            file.display().to_string(),
            format!("{}.gz", file.display()),
        ));
    }
    code.push_str("];\n");
    code.push_str(&format!("/// The page's gzipped budget ui/build.mjs holds it to.\npub const BUDGET_GZIP_BYTES: usize = {};\n", manifest["budget_gzip_bytes"]));
    std::fs::write(PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("assets.rs"), code).unwrap();
}

fn modified(p: &Path) -> std::time::SystemTime {
    p.metadata().and_then(|m| m.modified()).unwrap_or(std::time::SystemTime::UNIX_EPOCH)
}

fn run(cmd: &mut Command, what: &str) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("{what}: {e}. The web UI is built with Node.js (18 or later) and npm: ./scripts/deps.sh installs them (Debian: apt-get install nodejs npm)."));
    assert!(status.success(), "{what} failed ({status})");
}
