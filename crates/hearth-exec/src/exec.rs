//! `exec`: one command, its output streamed back as it comes, its stdin (when asked for)
//! streamed in.
//!
//! A command is killed with its whole process group when it times out, writes more than its
//! output limit, or its client goes away, so nothing keeps running for nobody.

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use hearth_proto::control::{ErrorKind, Event, ExecSpec, TAG_STDERR, TAG_STDIN, TAG_STDOUT};
use hearth_proto::frame::{read_frame, write_frame};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::conn::Conn;
use crate::refusal::Refusal;
use crate::reply::{refuse, send};
use crate::user;

/// Runs `spec` with `env` (the server's configured environment) under the request's own.
pub(crate) fn exec<C: Conn>(mut conn: C, env: &[(String, String)], spec: &ExecSpec) -> Result<(), Refusal> {
    let mut cmd = Command::new(&spec.argv[0]);
    cmd.args(&spec.argv[1..])
        .env_clear()
        .envs(env.iter().cloned())
        .stdin(if spec.stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: in the forked child before exec; only sigaction is called.
    unsafe {
        cmd.pre_exec(|| {
            user::default_signal_actions();
            Ok(())
        });
    }
    if let Some(name) = &spec.user {
        let account = match user::lookup(name) {
            Ok(a) => a,
            Err(e) => return refuse(&mut conn, e),
        };
        user::apply(&mut cmd, &account).or_else(|e| refuse(&mut conn, e))?;
    }
    cmd.envs(spec.env.iter().cloned());
    if let Some(dir) = &spec.cwd {
        cmd.current_dir(dir);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        // Whatever the cause (a missing binary too), the command was tried and could not run.
        Err(e) => return refuse(&mut conn, Refusal::failed(format!("cannot run {}: {e}", spec.argv[0]))),
    };
    let pgid = Pid::from_raw(child.id() as i32);
    let writer = Arc::new(Mutex::new(conn.try_clone_conn()?));
    // The pumps write output frames through the same writer: control events take the lock too.
    let send_shared = |ev: &Event| send(&mut *writer.lock().expect("no panics while held"), ev);
    send_shared(&Event::Started { pid: child.id() })?;
    let gone = Arc::new(AtomicBool::new(false));
    let budget = Arc::new(AtomicU64::new(spec.output_limit()));
    let over = Arc::new(AtomicBool::new(false));
    let streams: [(Option<Box<dyn Read + Send>>, u8); 2] =
        [(child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>), TAG_STDOUT), (child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>), TAG_STDERR)];
    let pumps: Vec<_> = streams
        .into_iter()
        .filter_map(|(r, tag)| r.map(|r| (r, tag)))
        .map(|(r, tag)| {
            let (writer, gone, budget, over) = (writer.clone(), gone.clone(), budget.clone(), over.clone());
            std::thread::spawn(move || pump(r, tag, &writer, &gone, &budget, &over))
        })
        .collect();
    // What the client sends after its request is stdin, or nothing: the stream ending (or
    // anything else arriving) means it went away.
    {
        let (watch, gone, stdin) = (conn.try_clone_conn()?, gone.clone(), child.stdin.take());
        std::thread::spawn(move || {
            feed_stdin(watch, stdin);
            gone.store(true, Ordering::SeqCst);
        });
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let deadline = spec.timeout_secs.map(|t| Instant::now() + Duration::from_secs(t));
    let mut timed_out = false;
    let status = loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(Ok(status)) => break status,
            Ok(Err(e)) => {
                // Tell the client why, rather than closing on it without an `exited`.
                let failure = Refusal::failed(format!("waiting for {} failed: {e}", spec.argv[0]));
                let _ = send_shared(&failure.event());
                return Err(failure);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let expired = deadline.is_some_and(|d| Instant::now() > d);
                if expired || gone.load(Ordering::SeqCst) || over.load(Ordering::SeqCst) {
                    timed_out |= expired;
                    let _ = killpg(pgid, Signal::SIGKILL);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let failure = Refusal::new(ErrorKind::Failed, "lost the command's wait thread");
                let _ = send_shared(&failure.event());
                return Err(failure);
            }
        }
    };
    // Daemons the command left in its group would hold the pipes open forever.
    let _ = killpg(pgid, Signal::SIGKILL);
    for p in pumps {
        let _ = p.join();
    }
    let exited = Event::Exited { code: status.code(), signal: status.signal(), timed_out, truncated: over.load(Ordering::SeqCst) };
    let result = send_shared(&exited);
    conn.shutdown_conn();
    result
}

/// Copies `TAG_STDIN` frames into the command until the client ends its stdin (an empty
/// frame), then waits for the client to go away. Returns when the connection ends or
/// carries something it should not.
fn feed_stdin<C: Conn>(mut conn: C, mut stdin: Option<ChildStdin>) {
    loop {
        match read_frame(&mut conn) {
            Ok(Some(f)) if f.tag == TAG_STDIN && stdin.is_some() => {
                if f.payload.is_empty() {
                    stdin = None; // EOF for the command
                } else if let Some(s) = stdin.as_mut() {
                    // A command that stopped reading its stdin is not an error of the client's.
                    if s.write_all(&f.payload).is_err() {
                        stdin = None;
                    }
                }
            }
            _ => return,
        }
    }
}

/// Copies one output stream into frames until EOF, the client leaving, or the budget ending.
fn pump<C: Conn>(mut r: Box<dyn Read + Send>, tag: u8, writer: &Mutex<C>, gone: &AtomicBool, budget: &AtomicU64, over: &AtomicBool) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Take up to n bytes of the budget shared with the other stream, atomically.
        let left = budget.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| Some(b.saturating_sub(n as u64))).unwrap_or(0);
        let send_n = n.min(usize::try_from(left).unwrap_or(usize::MAX));
        if send_n < n {
            over.store(true, Ordering::SeqCst);
        }
        if send_n > 0 && write_frame(&mut *writer.lock().expect("no panics while held"), tag, &buf[..send_n]).is_err() {
            gone.store(true, Ordering::SeqCst);
            return;
        }
        if send_n < n {
            return;
        }
    }
}
