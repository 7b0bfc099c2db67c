//! Terminal sessions over the control protocol, served as the agent serves them: typing and
//! echo, resize, detach and re-attach with the exact screen, several readers, read-only
//! viewers, a reader that never reads, exits and closes.

mod support;

use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use hearth_exec::{ErrorKind, ExecError, PtyEvent, PtyStream};
use hearth_proto::control::{PtySpec, Request, MAX_PTYS};

const WAIT: Duration = Duration::from_secs(10);

fn shell(id: &str) -> PtySpec {
    PtySpec { id: Some(id.into()), argv: vec!["/bin/sh".into()], rows: 24, cols: 80, ..PtySpec::default() }
}

/// Reads live output into `seen` until it contains `want`.
fn read_until(stream: &mut PtyStream<UnixStream>, seen: &mut Vec<u8>, want: &str) {
    let deadline = Instant::now() + WAIT;
    while !String::from_utf8_lossy(seen).contains(want) {
        assert!(Instant::now() < deadline, "no {want:?} in {:?}", String::from_utf8_lossy(seen));
        match stream.next(Some(WAIT)).unwrap() {
            PtyEvent::Output(b) => seen.extend_from_slice(&b),
            PtyEvent::Resized { .. } => {}
            other => panic!("{other:?} while waiting for {want:?}"),
        }
    }
}

/// Waits until a child of `parent` runs the program `comm`.
fn wait_for_child(parent: u32, comm: &str) {
    let deadline = Instant::now() + WAIT;
    let runs = || {
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            // `pid (comm) state ppid ...`: the name sits in parentheses, the parent after them.
            let Some((name, rest)) = stat.split_once('(').and_then(|(_, r)| r.rsplit_once(')')) else { return false };
            name == comm && rest.split_whitespace().nth(1) == Some(parent.to_string().as_str())
        })
    };
    while !runs() {
        assert!(Instant::now() < deadline, "no child `{comm}` of pid {parent}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn term(rows: u16, cols: u16) -> vt100::Parser {
    vt100::Parser::new(rows.try_into().unwrap(), cols.try_into().unwrap(), 0)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn typing_echoes_and_resizing_reaches_the_shell() {
    let s = support::server();
    let info = s.client().pty_open(shell("a")).unwrap();
    assert_eq!((info.id.as_str(), info.rows, info.cols, info.exited), ("a", 24, 80, None));
    let mut t = s.client().pty_attach("a", None, false).unwrap();
    let mut input = t.input().unwrap();
    let mut seen = Vec::new();
    input.write(b"echo hi-$((40+2))\n").unwrap();
    read_until(&mut t, &mut seen, "hi-42");
    input.resize(40, 100).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        match t.next(Some(WAIT)).unwrap() {
            PtyEvent::Resized { rows, cols } => {
                assert_eq!((rows, cols), (40, 100));
                break;
            }
            PtyEvent::Output(b) => seen.extend_from_slice(&b),
            other => panic!("{other:?}"),
        }
        assert!(Instant::now() < deadline);
    }
    input.write(b"stty size\n").unwrap();
    read_until(&mut t, &mut seen, "40 100");
    // A resize through a control request reaches it too.
    s.client().pty_ok(&Request::PtyResize { id: "a".into(), rows: 30, cols: 90 }).unwrap();
    input.write(b"stty size\n").unwrap();
    read_until(&mut t, &mut seen, "30 90");
    s.client().pty_ok(&Request::PtyClose { id: "a".into() }).unwrap();
}

#[test]
fn a_reattach_gets_the_exact_screen_and_the_scrollback() {
    let s = support::server();
    s.client().pty_open(shell("b")).unwrap();
    let mut first = s.client().pty_attach("b", None, false).unwrap();
    // What a client that saw everything would show: the replay, then the live stream.
    let mut mirror = term(24, 80);
    mirror.process(&first.screen);
    let mut seen = Vec::new();
    // Typed before the shell's first prompt, the line would be echoed by the terminal and the
    // prompt would land in front of the first number ("$ 1").
    if !text(&first.screen).contains("$ ") {
        read_until(&mut first, &mut seen, "$ ");
    }
    first.input().unwrap().write(b"seq 1 300; printf '\\033[1;31mred\\033[0m end-mark\\n'\n").unwrap();
    read_until(&mut first, &mut seen, "end-mark\r\n$ ");
    mirror.process(&seen);
    first.detach();

    let again = s.client().pty_attach("b", None, false).unwrap();
    let mut replayed = term(24, 80);
    replayed.process(&again.screen);
    assert_eq!(replayed.screen().contents(), mirror.screen().contents());
    assert_eq!(replayed.screen().cursor_position(), mirror.screen().cursor_position());
    // Colours survive the replay.
    let red = (0..24).flat_map(|r| (0..80).map(move |c| (r, c))).find(|&(r, c)| replayed.screen().cell(r, c).unwrap().contents() == "r").unwrap();
    assert_eq!(replayed.screen().cell(red.0, red.1).unwrap().fgcolor(), vt100::Color::Idx(1));
    // The lines that scrolled off are in the scrollback, in order; with the screen, 1..=300 all.
    let mut history = term(400, 80);
    history.process(&again.scrollback);
    let all = history.screen().contents() + "\n" + &replayed.screen().contents();
    let numbers: Vec<u32> = all.lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert_eq!(numbers, (1..=300).collect::<Vec<_>>());
    // Asked for less scrollback, it gets the last lines only.
    let short = s.client().pty_attach("b", Some(5), false).unwrap();
    assert_eq!(text(&short.scrollback).matches("\r\n").count(), 5);
    s.client().pty_ok(&Request::PtyClose { id: "b".into() }).unwrap();
}

#[test]
fn after_a_flood_a_reattach_gets_its_end_on_screen_and_in_the_scrollback() {
    let s = support::server();
    s.client().pty_open(shell("f")).unwrap();
    let mut first = s.client().pty_attach("f", None, false).unwrap();
    let mut seen = Vec::new();
    if !text(&first.screen).contains("$ ") {
        read_until(&mut first, &mut seen, "$ ");
    }
    // ~2.7 MB: more than the parser may fall behind, so most of it is dropped unparsed
    // (however fast this machine parses, the end must be right).
    first.input().unwrap().write(b"seq 1 400000; echo flood-$((6*7))\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !text(&seen[seen.len().saturating_sub(4096)..]).contains("flood-42\r\n$ ") {
        assert!(Instant::now() < deadline, "the flood did not end");
        match first.next(Some(WAIT)).unwrap() {
            PtyEvent::Output(b) => seen.extend_from_slice(&b),
            other => panic!("{other:?}"),
        }
    }
    first.detach();
    let again = s.client().pty_attach("f", None, false).unwrap();
    let mut screen = term(24, 80);
    screen.process(&again.screen);
    assert!(screen.screen().contents().ends_with("400000\nflood-42\n$ "), "{}", screen.screen().contents());
    // Scrollback and screen hold the flood's last lines, in order, none missing.
    let mut history = term(1100, 80);
    history.process(&again.scrollback);
    let all = history.screen().contents() + "\n" + &screen.screen().contents();
    let numbers: Vec<u32> = all.lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert!(numbers.len() >= 1000, "{} lines kept", numbers.len());
    let from = 400_001 - numbers.len() as u32;
    assert_eq!(numbers, (from..=400_000).collect::<Vec<_>>());
    s.client().pty_ok(&Request::PtyClose { id: "f".into() }).unwrap();
}

#[test]
fn two_readers_see_the_same_output_and_a_viewer_cannot_type() {
    let s = support::server();
    s.client().pty_open(shell("c")).unwrap();
    let mut writer = s.client().pty_attach("c", None, false).unwrap();
    let mut viewer = s.client().pty_attach("c", None, true).unwrap();
    assert_eq!(s.client().pty_list().unwrap()[0].attached, 2);
    viewer.input().unwrap().write(b"echo from-viewer-$((1+1))\n").unwrap();
    writer.input().unwrap().write(b"echo from-writer-$((2+3))\n").unwrap();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    read_until(&mut writer, &mut a, "from-writer-5");
    read_until(&mut viewer, &mut b, "from-writer-5");
    assert!(!text(&a).contains("from-viewer") && !text(&b).contains("from-viewer"), "{}", text(&a));
    s.client().pty_ok(&Request::PtyClose { id: "c".into() }).unwrap();
}

#[test]
fn a_reader_that_never_reads_is_dropped_and_stalls_nobody() {
    let s = support::server();
    s.client().pty_open(shell("d")).unwrap();
    let mut stuck = s.client().pty_attach("d", None, false).unwrap();
    let mut live = s.client().pty_attach("d", None, false).unwrap();
    // ~12 MiB of output: more than the stuck reader's socket buffer and queue together.
    live.input().unwrap().write(b"head -c 3000000 /dev/zero | od -v; echo flood-$((6*7))\n").unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !text(&seen[seen.len().saturating_sub(4096)..]).contains("flood-42") {
        assert!(Instant::now() < deadline, "the live reader stalled");
        match live.next(Some(WAIT)).unwrap() {
            PtyEvent::Output(b) => seen.extend_from_slice(&b),
            other => panic!("{other:?}"),
        }
    }
    assert!(seen.len() > 10 << 20, "only {} bytes", seen.len());
    assert_eq!(s.client().pty_list().unwrap()[0].attached, 1, "the stuck reader is still attached");
    // The stuck reader gets what was queued for it, then is told why it was dropped.
    let mut got = 0usize;
    loop {
        match stuck.next(Some(WAIT)).unwrap() {
            PtyEvent::Output(b) => got += b.len(),
            PtyEvent::Lagged => break,
            other => panic!("{other:?} after {got} bytes"),
        }
    }
    assert_eq!(stuck.next(Some(WAIT)).unwrap(), PtyEvent::Closed);
    s.client().pty_ok(&Request::PtyClose { id: "d".into() }).unwrap();
}

#[test]
fn an_exit_is_reported_kept_and_replayed_until_closed() {
    let s = support::server();
    s.client().pty_open(shell("e")).unwrap();
    let mut t = s.client().pty_attach("e", None, false).unwrap();
    t.input().unwrap().write(b"echo bye; exit 3\n").unwrap();
    let mut seen = Vec::new();
    loop {
        match t.next(Some(WAIT)).unwrap() {
            PtyEvent::Output(b) => seen.extend_from_slice(&b),
            PtyEvent::Exited(st) => {
                assert_eq!((st.code, st.signal), (Some(3), None));
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(s.client().pty_list().unwrap()[0].exited.unwrap().code, Some(3));
    let mut late = s.client().pty_attach("e", None, false).unwrap();
    let mut screen = term(24, 80);
    screen.process(&late.screen);
    assert!(screen.screen().contents().contains("bye"));
    assert!(matches!(late.next(Some(WAIT)).unwrap(), PtyEvent::Exited(_)));
    s.client().pty_ok(&Request::PtyClose { id: "e".into() }).unwrap();
    assert!(s.client().pty_list().unwrap().is_empty());
}

#[test]
fn close_ends_what_ignores_the_hangup() {
    let s = support::server();
    let spec = PtySpec { argv: vec!["sh".into(), "-c".into(), "trap '' HUP; sleep 1000".into()], ..shell("f") };
    let info = s.client().pty_open(spec).unwrap();
    s.client().pty_ok(&Request::PtyClose { id: "f".into() }).unwrap();
    let deadline = Instant::now() + WAIT;
    // Reaped by the session's reader thread once killed: no process, no zombie.
    while std::path::Path::new(&format!("/proc/{}", info.pid)).exists() {
        assert!(Instant::now() < deadline, "pid {} outlived its session", info.pid);
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn signals_reach_the_foreground_job() {
    // As a server started by `cmd &` from a script is: SIGINT ignored. Its terminals' shells
    // must not inherit that (a shell keeps a signal ignored at its start ignored for good).
    // SAFETY: SIG_IGN for SIGINT; no handler runs.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    let s = support::server();
    let shell_pid = s.client().pty_open(shell("g")).unwrap().pid;
    let mut t = s.client().pty_attach("g", None, false).unwrap();
    let mut seen = Vec::new();
    let mut input = t.input().unwrap();
    input.write(b"sleep 1000\n").unwrap();
    read_until(&mut t, &mut seen, "sleep 1000");
    // The shell makes the job the terminal's foreground group before it execs `sleep`; a
    // signal sent earlier goes to the shell, which ignores SIGINT, and the sleep runs on.
    wait_for_child(shell_pid, "sleep");
    s.client().pty_ok(&Request::PtySignal { id: "g".into(), signal: 2 }).unwrap();
    // The shell is back at its prompt only once the sleep is gone.
    input.write(b"echo interrupted-$((3*3))\n").unwrap();
    read_until(&mut t, &mut seen, "interrupted-9");
    assert!(
        matches!(s.client().pty_ok(&Request::PtySignal { id: "g".into(), signal: 999 }), Err(ExecError::Refused { kind: ErrorKind::Invalid, message: m }) if m.contains("not a signal"))
    );
    s.client().pty_ok(&Request::PtyClose { id: "g".into() }).unwrap();
}

#[test]
fn limits_and_unknown_sessions_are_clear_errors() {
    let s = support::server();
    let mut c = s.client();
    let refused = |r: Result<(), ExecError>, want: ErrorKind| match r {
        Err(ExecError::Refused { kind, message }) if kind == want => message,
        other => panic!("{other:?}, expected a refusal of kind {want}"),
    };
    assert!(refused(c.pty_ok(&Request::PtyResize { id: "nope".into(), rows: 10, cols: 10 }), ErrorKind::NotFound).contains("no pty session `nope`"));
    assert!(matches!(s.client().pty_attach("nope", None, false), Err(ExecError::Refused { kind: ErrorKind::NotFound, message: m }) if m.contains("no pty session")));
    c.pty_open(PtySpec { argv: vec!["sleep".into(), "1000".into()], ..shell("h0") }).unwrap();
    assert!(refused(c.pty_ok(&Request::PtyResize { id: "h0".into(), rows: 0, cols: 10 }), ErrorKind::Invalid).contains("out of range"));
    assert!(matches!(c.pty_open(shell("h0")), Err(ExecError::Refused { kind: ErrorKind::Exists, message: m }) if m.contains("already exists")));
    assert!(
        matches!(c.pty_open(PtySpec { argv: vec!["/no/such/shell".into()], ..shell("x") }), Err(ExecError::Refused { kind: ErrorKind::Failed, message: m }) if m.contains("cannot run"))
    );
    for i in 1..MAX_PTYS {
        c.pty_open(PtySpec { id: Some(format!("h{i}")), argv: vec!["sleep".into(), "1000".into()], ..shell("") }).unwrap();
    }
    assert!(matches!(c.pty_open(shell("one-too-many")), Err(ExecError::Refused { kind: ErrorKind::Busy, message: m }) if m.contains("already open")));
    for i in 0..MAX_PTYS {
        c.pty_ok(&Request::PtyClose { id: format!("h{i}") }).unwrap();
    }
    assert!(c.pty_list().unwrap().is_empty());
}

/// Reads by offset until the output holds `want`: what came, and the offset to go on from.
fn poll_until(s: &support::Server, id: &str, mut after: u64, want: &str) -> (String, u64) {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    while !text(&seen).contains(want) {
        assert!(Instant::now() < deadline, "no {want:?} in {:?}", text(&seen));
        let out = s.client().pty_read(id, after, None, 1000).unwrap();
        assert_eq!(out.start, after, "nothing was skipped");
        seen.extend_from_slice(&out.data);
        after = out.end;
    }
    (text(&seen), after)
}

#[test]
fn a_client_that_polls_types_reads_every_byte_once_and_sees_the_screen() {
    let s = support::server();
    s.client().pty_open(shell("p")).unwrap();
    let (_, mut at) = poll_until(&s, "p", 0, "$ ");
    s.client().pty_ok(&Request::PtyWrite { id: "p".into(), data: "echo poll-$((6*7))\n".into() }).unwrap();
    let (seen, next) = poll_until(&s, "p", at, "poll-42\r\n$ ");
    assert_eq!(seen.matches("poll-").count(), 2, "the echoed line and its output, once each: {seen:?}");
    at = next;
    // Nothing new: a read that waits comes back empty, where it was.
    let idle = s.client().pty_read("p", at, None, 50).unwrap();
    assert_eq!((idle.start, idle.end, idle.data.len()), (at, at, 0));
    // Reads are bounded; the rest is there for the next read.
    s.client().pty_ok(&Request::PtyWrite { id: "p".into(), data: "seq 1 2000\n".into() }).unwrap();
    let (seen, _) = poll_until(&s, "p", at, "2000\r\n$ ");
    let numbers: Vec<u32> = seen.lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert_eq!(numbers, (1..=2000).collect::<Vec<_>>());
    let small = s.client().pty_read("p", at, Some(10), 0).unwrap();
    assert_eq!((small.start, small.data.len()), (at, 10));

    // The screen, from the agent's terminal: the last lines and the prompt, the cursor after it.
    let hearth_proto::control::Event::PtyScreen { rows, cols, cursor_row, cursor_col, text: screen, .. } = s.client().pty_screen("p").unwrap() else { unreachable!() };
    assert_eq!((rows, cols), (24, 80));
    let lines: Vec<&str> = screen.lines().collect();
    assert_eq!((lines.len(), lines[22], lines[23]), (24, "2000", "$ "), "{screen}");
    assert_eq!((cursor_row, cursor_col), (23, 2));

    // Too much at once, and a session that is gone, are refused as such.
    let big = "x".repeat(hearth_proto::control::MAX_PTY_WRITE + 1);
    let refused = s.client().pty_ok(&Request::PtyWrite { id: "p".into(), data: big }).unwrap_err();
    assert!(matches!(refused, ExecError::Refused { kind: ErrorKind::TooLarge, .. }), "{refused:?}");
    s.client().pty_ok(&Request::PtyClose { id: "p".into() }).unwrap();
    for e in [s.client().pty_read("p", 0, None, 0).unwrap_err(), s.client().pty_screen("p").unwrap_err()] {
        assert!(matches!(e, ExecError::Refused { kind: ErrorKind::NotFound, .. }), "{e:?}");
    }
}

#[test]
fn a_write_to_a_program_that_reads_nothing_gives_up_instead_of_hanging() {
    let s = support::server();
    // `sleep` reads no input and the terminal is raw: the PTY fills up.
    let spec = PtySpec { id: Some("w".into()), argv: vec!["/bin/sh".into(), "-c".into(), "stty raw -echo; sleep 60".into()], ..shell("w") };
    let info = s.client().pty_open(spec).unwrap();
    wait_for_child(info.pid, "sleep");
    let chunk = "y".repeat(hearth_proto::control::MAX_PTY_WRITE);
    let e = (0..64).find_map(|_| s.client().pty_ok(&Request::PtyWrite { id: "w".into(), data: chunk.clone() }).err()).expect("the PTY never filled");
    assert!(matches!(e, ExecError::Refused { kind: ErrorKind::Busy, .. }), "{e:?}");
    // The session still answers.
    s.client().pty_screen("w").unwrap();
    s.client().pty_ok(&Request::PtyClose { id: "w".into() }).unwrap();
}
