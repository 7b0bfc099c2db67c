//! Keystroke echo through an agent's terminal session (shared by `#[path]` between the
//! benchmark examples).

use std::time::{Duration, Instant};

use hearth_exec::{Conn, ExecClient, PtyEvent};
use hearth_proto::control::PtySpec;

use super::stats::ms;

/// `cat` on a raw PTY: every byte typed comes straight back.
pub(crate) fn raw_cat() -> PtySpec {
    PtySpec { argv: vec!["sh".into(), "-c".into(), "stty raw -echo; echo ready; exec cat".into()], rows: 24, cols: 80, ..PtySpec::default() }
}

/// Round trips of one keystroke through an attached session running `cat` on a raw PTY.
pub(crate) fn echo_through<C: Conn>(client: ExecClient<C>, id: &str, n: usize) -> Vec<f64> {
    let mut t = client.pty_attach(id, None, false).unwrap();
    let mut keys = t.input().unwrap();
    let mut seen = String::from_utf8_lossy(&t.screen).into_owned();
    while !seen.contains("ready") {
        match t.next(Some(Duration::from_secs(10))).unwrap() {
            PtyEvent::Output(b) => seen.push_str(&String::from_utf8_lossy(&b)),
            other => panic!("{other:?}"),
        }
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let key = b'a' + (i % 26) as u8;
        let start = Instant::now();
        keys.write(&[key]).unwrap();
        loop {
            match t.next(Some(Duration::from_secs(10))).unwrap() {
                PtyEvent::Output(b) if b.contains(&key) => break,
                PtyEvent::Output(_) => {}
                other => panic!("{other:?}"),
            }
        }
        out.push(ms(start.elapsed()));
    }
    out
}
