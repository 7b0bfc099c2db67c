//! `hearth serve` on a host whose KVM cannot run guests: the same server runs inside the box
//! with its port forwarded on loopback; stopping it (SIGTERM) suspends the running
//! workstations and shuts the box down cleanly; the next `hearth serve` finds everything on
//! the box's disk and boots what was running.

mod common;

use std::time::{Duration, Instant};

use common::{serve, stop};

use serde_json::{json, Value};

fn call(method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    let req = common::authed(ureq::request(method, url).timeout(Duration::from_secs(300)));
    let res = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    match res {
        Ok(r) => (r.status(), r.into_json().unwrap_or(Value::Null)),
        Err(ureq::Error::Status(s, r)) => (s, r.into_json().unwrap_or(Value::Null)),
        Err(e) => panic!("{method} {url}: {e}"),
    }
}

#[test]
fn serve_runs_in_the_box_and_a_restart_boots_what_was_running() {
    if std::env::var_os("HEARTH_IN_BOX").is_some() {
        return; // this test is about the host side of the box
    }
    common::with_outer_box_retried(serve_restart_resume);
}

fn serve_restart_resume(data: &std::path::Path) {
    let o = serve(data);
    let ws_url = format!("{}/api/v1/workstations", o.base);
    let (s, ws) = call("POST", &ws_url, Some(json!({"name": "kept", "mem_size_mib": 512, "disk_size_gib": 1})));
    assert_eq!((s, ws["state"].as_str()), (201, Some("running")), "{ws}");
    let one = format!("{ws_url}/{}", ws["id"].as_str().unwrap());
    let (s, r) = call("POST", &format!("{one}/exec"), Some(json!({"argv": ["sh", "-c", "echo across-restarts > ~/f"]})));
    assert_eq!((s, r["exit_code"].as_i64()), (200, Some(0)), "{r}");
    stop(o);

    let o = serve(data);
    let one = one.replacen(&one[..one.find("/api").unwrap()], &o.base, 1);
    // Boots of suspended workstations run after the server answers: wait for it.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (_, w) = call("GET", &one, None);
        if w["state"] == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "not running again: {w}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let (_, r) = call("POST", &format!("{one}/exec"), Some(json!({"argv": ["cat", "/home/scientist/f"]})));
    assert_eq!(r["stdout"], "across-restarts\n");
    let (_, ev) = call("GET", &format!("{one}/events"), None);
    let kinds: Vec<&str> = ev["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["created", "started", "stopped", "started"]);
    assert_eq!(call("DELETE", &one, None).0, 204);
    stop(o);
}
