//! `hearth ws …` against a real `hearth serve` with real workstations, in the box: what a
//! user types, what they see, and the exit statuses scripts rely on.

mod common;
#[path = "support/pty.rs"]
mod pty;

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `hearth ws --server URL ARGS…`; returns (status, stdout, stderr).
fn ws(server: &str, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new("hearth");
    cmd.arg("ws").args(["--server", server]).args(args);
    // The server's administrator token; none for a server no test started (one that is not there).
    if let Some(t) = common::token_for(server) {
        cmd.env("HEARTH_TOKEN", t);
    }
    common::run(&mut cmd)
}

/// A terminal's screen as a user at it sees it: what came out of the pty's master so far.
struct Screen {
    master: std::fs::File,
    seen: String,
}

impl Screen {
    /// Reads until `needle` has come out, or fails with what did.
    fn until(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !self.seen.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no {needle:?} within 120 s; the terminal showed: {:?}", self.seen);
            let mut fds = [nix::poll::PollFd::new(std::os::fd::AsFd::as_fd(&self.master), nix::poll::PollFlags::POLLIN)];
            if nix::poll::poll(&mut fds, nix::poll::PollTimeout::try_from(left).unwrap_or(nix::poll::PollTimeout::MAX)).unwrap_or(0) == 0 {
                continue;
            }
            let mut buf = [0u8; 4096];
            match self.master.read(&mut buf) {
                Ok(n) if n > 0 => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                // EIO: the slave's last holder went (the attach ended).
                _ => panic!("the terminal closed before {needle:?}; it showed: {:?}", self.seen),
            }
        }
    }
}

/// `hearth ws attach ARGS…` at a terminal of its own, 33 x 111: raw mode, window changes, the
/// detach key. Returns the attach, the screen, and the pty's master (to resize it).
fn attach_at_a_terminal(server: &str, args: &[&str]) -> (std::process::Child, Screen, OwnedFd) {
    let mut cmd = Command::new("hearth");
    cmd.args(["ws", "--server", server, "attach"]).env("HEARTH_TOKEN", common::token_for(server).unwrap()).args(args).stderr(Stdio::piped());
    let (child, master) = pty::spawn_at_a_pty(&mut cmd, 33, 111);
    let screen = Screen { master: std::fs::File::from(master.try_clone().unwrap()), seen: String::new() };
    (child, screen, master)
}

#[test]
fn the_cli_drives_a_workstation() {
    if common::delegated_to_box("the_cli_drives_a_workstation") {
        return;
    }
    let data = std::path::PathBuf::from(std::env::var("HEARTH_DATA_DIR").unwrap()).join(format!("cli-{}", std::process::id()));
    let server = common::serve_in_box(&data);
    let url = server.base.as_str();

    let (code, out, err) = ws(url, &["create", "demo", "--mem", "512", "--disk", "1", "--json"]);
    assert_eq!(code, 0, "{err}");
    let created: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = created[0]["id"].as_str().unwrap().to_string();
    assert_eq!(created[0]["state"], "running");

    let (_, out, _) = ws(url, &["ls"]);
    let line = out.lines().find(|l| l.starts_with(&id)).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("demo") && line.contains("running") && line.contains("512 MiB"), "{line}");
    let (_, out, _) = ws(url, &["show", &id]);
    assert!(out.lines().any(|l| l.starts_with("memory") && l.ends_with("512 MiB")), "{out}");

    // exec passes output and exit status through.
    let (code, out, _) = ws(url, &["exec", &id, "--", "python3", "-c", "print(6*7)"]);
    assert_eq!((code, out.as_str()), (0, "42\n"));
    let (code, _, err) = ws(url, &["exec", &id, "--", "sh", "-c", "echo bad >&2; exit 3"]);
    assert_eq!((code, err.as_str()), (3, "bad\n"));

    // attach with stdin from a pipe (no terminal: no raw mode): the session runs what it is fed.
    let mut child = Command::new("hearth")
        .args(["ws", "--server", url, "attach", &id])
        .env("HEARTH_TOKEN", common::token_for(url).unwrap())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"echo attached-$((2+3))\nexit 4\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("attached-5"), "{stdout}");
    assert!(stderr.contains("the session ended (exit 4)"), "{stderr}");
    let (_, out, _) = ws(url, &["terminals", &id]);
    assert!(out.lines().any(|l| l.contains("exited 4")), "{out}");

    // attach at a terminal: the remote shell gets the window's size and follows its changes,
    // keystrokes are sent raw (Enter is a carriage return), Ctrl-] detaches and the session
    // goes on, with what it showed, for the next attach.
    let (child, mut screen, master) = attach_at_a_terminal(url, &[&id]);
    screen.master.write_all(b"stty size\r").unwrap();
    screen.until("33 111");
    pty::set_window(&master, 40, 120);
    screen.master.write_all(b"stty size; echo typed-$((6*7))\r").unwrap();
    screen.until("40 120");
    screen.until("typed-42");
    screen.master.write_all(&[0x1d]).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("hearth: detached (terminal "), "{stderr}");
    let tid = stderr.split("--terminal ").nth(1).and_then(|t| t.split(')').next()).unwrap_or_else(|| panic!("{stderr}")).to_string();
    let (_, out, _) = ws(url, &["terminals", &id]);
    let line = out.lines().find(|l| l.starts_with(&tid)).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("running") && line.contains("120x40"), "{line}");
    let (child, mut screen, _master) = attach_at_a_terminal(url, &[&id, "--terminal", &tid, "--view"]);
    // The replay: the screen as it was left, scrollback included.
    screen.until("typed-42");
    screen.master.write_all(b"echo not-typed\r\x1d").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stderr).contains("detached"));
    assert!(!screen.seen.contains("not-typed"), "a viewer typed: {:?}", screen.seen);

    // cp both ways, byte for byte; a missing remote file is a clear error.
    let local = data.with_extension("up");
    let payload: Vec<u8> = (0..2_500_000u32).map(|i| (i * 7 % 253) as u8).collect();
    std::fs::write(&local, &payload).unwrap();
    let (code, _, err) = ws(url, &["cp", local.to_str().unwrap(), &format!("{id}:/home/scientist/in.bin")]);
    assert_eq!(code, 0, "upload: {err}");
    let back = data.with_extension("down");
    let (code, _, err) = ws(url, &["cp", &format!("{id}:/home/scientist/in.bin"), back.to_str().unwrap()]);
    assert_eq!(code, 0, "download: {err}");
    assert!(std::fs::read(&back).unwrap() == payload);
    let (code, _, err) = ws(url, &["cp", &format!("{id}:/home/scientist/nothing"), back.to_str().unwrap()]);
    assert!(code == 1 && err.contains("HTTP 404"), "{err}");
    assert!(std::fs::read(&back).unwrap() == payload, "a failed download replaced the file");
    let _ = (std::fs::remove_file(&local), std::fs::remove_file(&back));

    assert!(ws(url, &["console", &id]).1.contains("hearth-agent: ready"));
    // console -f follows until the workstation is gone, then ends by itself.
    let mut follow =
        Command::new("hearth").args(["ws", "--server", url, "console", &id, "-f"]).env("HEARTH_TOKEN", common::token_for(url).unwrap()).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(follow.stdout.take().unwrap()));
    assert!(lines.by_ref().map_while(Result::ok).any(|l| l.contains("hearth-agent: ready")), "the follow ended before the tail arrived");
    let (_, out, _) = ws(url, &["logs", &id]);
    assert!(out.contains("created") && out.contains("terminal_opened"), "{out}");
    assert!(ws(url, &["stop", &id]).1.contains("stopped"));
    assert_eq!(ws(url, &["rm", &id]).0, 0);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(follow.wait().unwrap().success(), "console -f after the delete: {rest:?}");
    let (code, _, err) = ws(url, &["show", &id]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("no workstation `{id}`")) && err.contains("HTTP 404"), "{err}");
    // A server that is not there is a clear error, not a hang.
    let (code, _, err) = ws("http://127.0.0.1:1", &["ls"]);
    assert_eq!(code, 1);
    assert!(err.contains("is `hearth serve` running?"), "{err}");
    drop(server);
    std::fs::remove_dir_all(&data).unwrap();
}
