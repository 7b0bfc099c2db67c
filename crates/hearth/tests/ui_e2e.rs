//! The web UI in a real browser (Debian's Chromium, driven by playwright-core: ui/test/e2e.mjs)
//! against `hearth serve` on this host, its workstations real Firecracker VMs in the box: sign
//! in, create with a preset, a terminal's prompt, numpy, resize, reload, a second tab, files
//! in and out, the console, another user kept out, a phone's key bar and touch scrolling,
//! delete. Screenshots land in the test's temporary target directory (printed).

mod common;

use std::process::Command;

use serde_json::json;

#[test]
fn the_web_ui_drives_workstations_in_a_browser() {
    if std::env::var_os("HEARTH_IN_BOX").is_some() {
        return; // the browser runs on the host, as a user's would
    }
    common::with_outer_box_retried(|data| {
        let o = common::serve(data);
        let users = format!("{}/api/v1/users", o.base);
        let passwords = [("ann", "ann's long password"), ("bob", "bob's long password")];
        for (id, password) in passwords {
            let (s, b) = common::call("POST", &users, Some(json!({"id": id, "password": password})));
            assert_eq!(s, 201, "{b}");
        }
        let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-e2e");
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui/test/e2e.mjs");
        let status = Command::new("node")
            .arg(&script)
            .env("HEARTH_URL", &o.base)
            .env("ANN_PASSWORD", passwords[0].1)
            .env("BOB_PASSWORD", passwords[1].1)
            .env("SCREENSHOTS", &shots)
            .status()
            .expect("node runs (scripts/deps.sh installs it)");
        eprintln!("ui-e2e: screenshots in {}", shots.display());
        assert!(status.success(), "the browser run failed ({status}); its steps are above");
        common::stop(o);
    });
}
