//! hearth as a Hypha service with real workstations: `hearth serve` on this host (serving
//! from the box, so the bridge runs here and calls the server inside through the forwarded
//! port) registered on a REAL Hypha server; a `hypha-rpc` client signed in as a Hypha user
//! makes a terminal in a real Firecracker workstation, runs python3 in it, reads the answer,
//! the screen, resizes; the workstation is that user's. (Identity, refusals, the seed's call
//! order and a Hypha restart are in hearth-server's hypha_e2e, over the fake backend.)

mod common;

use std::process::Stdio;
use std::time::Duration;

use hearth_hypha::testing::Hypha;
use serde_json::Value;

#[test]
fn a_hypha_user_drives_a_real_workstation_through_hearth_serve() {
    if std::env::var_os("HEARTH_IN_BOX").is_some() {
        return; // this test is about the host side of the box
    }
    let hypha = Hypha::start();
    let bridge_token = hypha.user("hearth-bridge", "bridge@lab.org");
    common::with_outer_box_retried(|data| {
        let env = [
            ("HEARTH_HYPHA__SERVER_URL", hypha.url.as_str()),
            ("HEARTH_HYPHA__SERVICE_TOKEN", bridge_token.as_str()),
            // The test's venv has hypha-rpc: no second one is made for the bridge.
            ("HEARTH_HYPHA__BRIDGE_PYTHON", hypha.python.to_str().unwrap()),
        ];
        let o = common::serve_with(data, &env);
        let ann = hypha.user("ann-1", "ann@lab.org");
        let out = hypha.client(
            "ws-user-hearth-bridge/hearth-terminal-service",
            Some(&ann),
            "owner",
            None,
            &["create_terminal", "write and read: 42", "screen", "resize: stty size says 30 100", "list_terminals"],
        );
        let tid = out.lines().find_map(|l| l.strip_prefix("terminal ")).expect("the scenario names its terminal");
        let ws = tid.split_once(':').unwrap().0;
        // The workstation is Ann's, as the administrator sees it.
        let url = format!("{}/api/v1/workstations/{ws}", o.base);
        let got: Value = common::authed(ureq::get(&url).timeout(Duration::from_secs(60))).call().unwrap().into_json().unwrap();
        assert_eq!((got["owner"].as_str(), got["state"].as_str()), (Some("hypha:ann-1"), Some("running")), "{got}");
        common::stop(o);
    });
}

/// Serving directly (no box: this host runs no guests, and none is booted), `hearth serve`
/// starts the bridge beside itself, the bridge answers a Hypha user through the server, and
/// stopping the server stops and reaps the bridge.
#[test]
fn serving_directly_the_bridge_runs_beside_the_server_and_ends_with_it() {
    if std::env::var_os("HEARTH_IN_BOX").is_some() {
        return; // the box has no Hypha server to reach
    }
    let hypha = Hypha::start();
    let data = tempfile::tempdir().unwrap();
    let token = hypha.user("hearth-bridge", "bridge@lab.org");
    let env = [("HEARTH_HYPHA__SERVER_URL", hypha.url.as_str()), ("HEARTH_HYPHA__SERVICE_TOKEN", token.as_str()), ("HEARTH_HYPHA__BRIDGE_PYTHON", hypha.python.to_str().unwrap())];
    let (mut child, _base) = common::serve_direct(data.path(), &env, Stdio::null());
    let ann = hypha.user("ann-1", "ann@lab.org");
    hypha.client("ws-user-hearth-bridge/hearth-terminal-service", Some(&ann), "empty", None, &["nothing listed"]);
    let script = data.path().join("hypha-bridge.py");
    let bridge_pids = || -> Vec<i32> {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(script.to_str().unwrap())))
            .collect()
    };
    assert_eq!(bridge_pids().len(), 1, "one bridge runs beside the server");
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM);
    assert!(child.wait().unwrap().success());
    assert!(bridge_pids().is_empty(), "the bridge ended with the server");
}
