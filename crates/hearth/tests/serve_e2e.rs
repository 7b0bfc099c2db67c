//! `hearth serve` on a host whose KVM cannot run guests: the same server runs inside the box
//! with its port forwarded on loopback; stopping it (SIGTERM) hibernates the running
//! workstations and shuts the box down cleanly; the next `hearth serve` finds everything on
//! the box's disk and the first call to a workstation wakes it where it was: the same boot,
//! the same processes, the same terminals.

mod common;

use std::time::Duration;

use common::{serve, serve_with, stop};

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
fn serve_runs_in_the_box_and_a_restart_keeps_what_was_running() {
    if std::env::var_os("HEARTH_IN_BOX").is_some() {
        return; // this test is about the host side of the box
    }
    common::with_outer_box_retried(serve_restart_wake);
}

/// Runs `sh -c script` in the workstation at `one`; its stdout.
fn sh(one: &str, script: &str) -> String {
    let (s, r) = call("POST", &format!("{one}/exec"), Some(json!({"argv": ["sh", "-c", script]})));
    assert_eq!((s, r["exit_code"].as_i64()), (200, Some(0)), "{script}: {r}");
    r["stdout"].as_str().unwrap().to_string()
}

fn serve_restart_wake(data: &std::path::Path) {
    let o = serve(data);
    let ws_url = format!("{}/api/v1/workstations", o.base);
    let (s, ws) = call("POST", &ws_url, Some(json!({"name": "kept", "mem_size_mib": 512, "disk_size_gib": 1})));
    assert_eq!((s, ws["state"].as_str()), (201, Some("running")), "{ws}");
    let one = format!("{ws_url}/{}", ws["id"].as_str().unwrap());
    sh(&one, "echo across-restarts > ~/f");
    let boot = sh(&one, "cat /proc/sys/kernel/random/boot_id");
    // A terminal and the process in it: both must outlive the server.
    let (s, term) = call("POST", &format!("{one}/terminals"), Some(json!({"argv": ["sleep", "100000"]})));
    assert_eq!(s, 201, "{term}");
    let pid = sh(&one, "pgrep -x sleep");
    assert!(!pid.trim().is_empty() && !pid.trim().contains('\n'), "{pid:?}");
    stop(o);

    // This time, a workstation nobody uses hibernates after a few seconds.
    let o = serve_with(data, &[("HEARTH_IDLE__HIBERNATE_AFTER_SECS", "10")]);
    let one = one.replacen(&one[..one.find("/api").unwrap()], &o.base, 1);
    let (_, w) = call("GET", &one, None);
    assert_eq!(w["state"], "hibernated", "{w}");
    // The first call wakes it: the same boot, the same process, the same terminal.
    let now = sh(&one, "cat /proc/sys/kernel/random/boot_id");
    assert_eq!(now, boot, "it booted again: {}", call("GET", &format!("{one}/events"), None).1);
    assert_eq!(sh(&one, "pgrep -x sleep"), pid, "the terminal's process");
    assert_eq!(sh(&one, "cat ~/f"), "across-restarts\n");
    let (_, terms) = call("GET", &format!("{one}/terminals"), None);
    let live: Vec<&Value> = terms["terminals"].as_array().unwrap().iter().filter(|t| t["id"] == term["id"]).collect();
    assert_eq!(live.len(), 1, "{terms}");
    assert!(live[0]["exited"] == false && live[0]["ended_unix_ms"].is_null(), "{terms}");

    // Left alone, it hibernates by itself; the next call wakes it, still the same boot.
    let rss = call("GET", &one, None).1["vmm_rss_mib"].as_u64().unwrap_or(0);
    assert!(rss > 0, "a running workstation's Firecracker holds no memory?");
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        let (_, w) = call("GET", &one, None);
        if w["state"] == "hibernated" {
            assert!(w.get("vmm_rss_mib").is_none(), "{w}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never hibernated while idle: {}", call("GET", &format!("{one}/events"), None).1);
        std::thread::sleep(Duration::from_secs(1));
    }
    let (_, terms) = call("GET", &format!("{one}/terminals"), None);
    assert!(
        terms["terminals"].as_array().unwrap().iter().any(|t| t["id"] == term["id"] && t["ended_unix_ms"].is_null()),
        "{terms}\n{}",
        call("GET", &format!("{one}/events"), None).1
    );
    assert_eq!(sh(&one, "cat /proc/sys/kernel/random/boot_id"), boot, "it booted again");
    assert_eq!(sh(&one, "pgrep -x sleep"), pid, "the terminal's process");
    let (_, ev) = call("GET", &format!("{one}/events"), None);
    let events = ev["events"].as_array().unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["created", "started", "terminal_opened", "hibernated", "woken", "hibernated", "woken"], "{ev}");
    assert!(events[5]["message"].as_str().unwrap().starts_with("idle for"), "{ev}");
    assert_eq!(call("DELETE", &one, None).0, 204);
    stop(o);
}
