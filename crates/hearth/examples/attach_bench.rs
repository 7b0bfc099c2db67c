//! `hearth ws attach` as a user at a terminal meets it, for bench/attach.sh: natively (no box,
//! no workstation), against a stand-in terminal WebSocket in this process that says
//! `attached` and echoes every binary message back. The attach runs on a pty of its own (its
//! controlling terminal); a key is written to the pty's master and timed until its echo comes
//! out of it: pty → attach → WebSocket → echo → attach → pty. Peer, in the same run: the
//! same echo round trip straight from a WebSocket client (no pty, no attach), the floor under
//! it. Also: the attach's context switches a second while nothing happens.
//! Usage: `attach_bench HEARTH_BINARY [round trips]`. Prints JSON.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use tungstenite::Message;

#[path = "../tests/support/pty.rs"]
mod pty;

/// (p50, p99) in ms.
fn stats(mut v: Vec<f64>) -> serde_json::Value {
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    json!({"n": v.len(), "p50_ms": q(0.5), "p99_ms": q(0.99)})
}

/// Context switches of all of `pid`'s threads so far.
fn switches(pid: u32) -> u64 {
    let status = |t: std::fs::DirEntry| std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
    let count = |s: String| s.lines().filter(|l| l.contains("ctxt_switches:")).filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()).sum::<u64>();
    std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten().map(|t| count(status(t))).sum()
}

/// Serves `connections` stand-in terminals on a loopback port, one after the other.
fn stand_in(connections: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for _ in 0..connections {
            let (tcp, _) = listener.accept().unwrap();
            tcp.set_nodelay(true).unwrap();
            let mut ws = tungstenite::accept(tcp).unwrap();
            let head = json!({"type": "attached", "rows": 24, "cols": 80, "title": "", "read_only": false, "replay_bytes": 0});
            ws.send(Message::Text(head.to_string().into())).unwrap();
            while let Ok(m) = ws.read() {
                if let Message::Binary(b) = m {
                    if ws.send(Message::Binary(b)).is_err() {
                        break;
                    }
                }
            }
        }
    });
    port
}

fn main() {
    let mut args = std::env::args().skip(1);
    let hearth = args.next().expect("usage: attach_bench HEARTH_BINARY [round trips]");
    let n: usize = args.next().map_or(2000, |a| a.parse().expect("round trips: a number"));
    let port = stand_in(2);
    let url = format!("ws://127.0.0.1:{port}/api/v1/workstations/w/terminals/t/ws");

    // The floor: a WebSocket client's own echo round trip.
    let (mut ws, _) = tungstenite::connect(&url).unwrap();
    ws.read().unwrap();
    let floor: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            ws.send(Message::Binary(b"a".to_vec().into())).unwrap();
            while !matches!(ws.read().unwrap(), Message::Binary(_)) {}
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    drop(ws);

    let mut cmd = Command::new(&hearth);
    cmd.args(["ws", "--server", &format!("http://127.0.0.1:{port}"), "attach", "w", "--terminal", "t"]).stderr(std::process::Stdio::null());
    let (mut child, master) = pty::spawn_at_a_pty(&mut cmd, 24, 80);
    let mut master = std::fs::File::from(master);
    // Attached once the terminal is raw (the pty no longer echoes by itself: an echo that
    // comes back is the stand-in's) and the first echo is back.
    let attached = Instant::now() + Duration::from_secs(30);
    while nix::sys::termios::tcgetattr(&master).unwrap().local_flags.contains(nix::sys::termios::LocalFlags::ECHO) {
        assert!(Instant::now() < attached, "the attach never put its terminal in raw mode");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut buf = [0u8; 256];
    master.write_all(b"a").unwrap();
    assert!(master.read(&mut buf).unwrap() >= 1);
    let through_attach: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            master.write_all(b"a").unwrap();
            assert!(master.read(&mut buf).unwrap() >= 1);
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let (before, idle) = (switches(child.id()), Duration::from_secs(5));
    std::thread::sleep(idle);
    let idle_switches = (switches(child.id()) - before) as f64 / idle.as_secs_f64();
    // Ctrl-] detaches.
    master.write_all(&[0x1d]).unwrap();
    let detached = child.wait().unwrap().success();
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "keystroke_echo_through_attach": stats(through_attach),
            "peer_websocket_client_echo": stats(floor),
            "attach_idle_context_switches_per_s": idle_switches,
            "detached_cleanly": detached,
        }))
        .unwrap()
    );
}
