//! Terminals in a workstation: open, list, close, attach, and for clients that poll rather
//! than attach (scripts, AI agents, the Hypha bridge): type, read output by offset, read the
//! screen, resize. A terminal lives in the workstation's agent, not here: a server restart or
//! a browser reconnect re-attaches and gets the exact screen back. The store keeps records of
//! them, so ended ones can still be listed.

use std::os::unix::net::UnixStream;
use std::sync::Arc;

use hearth_exec::PtyStream;
use hearth_proto::api::{CreateTerminal, Terminal, TerminalOutput, TerminalScreen};
use hearth_proto::control::{validate_size, Event, PtyInfo, PtySpec, Request, MAX_PTY_READ, MAX_PTY_WAIT_MS, MAX_PTY_WRITE, MAX_ROWS};
use hearth_proto::unix_ms_now;

use crate::console::cut_tail;
use crate::error::{agent_error, Error};
use crate::principal::{Principal, Scope};
use crate::sharing::Level;
use crate::store::TerminalRow;
use crate::{random_hex, Service};

/// How a client attaches to a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttachMode {
    /// Types and resizes (several writers may share a terminal).
    #[default]
    Write,
    /// Reads only: its keystrokes and resizes are ignored.
    View,
}

/// Where to read a terminal's output from, and how long to wait for some.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadFrom {
    /// The offset: the `next` of the previous read (0: from the oldest output kept).
    pub after: u64,
    /// At most this many bytes (default 64 KiB, at most 1 MiB).
    pub max_bytes: Option<u32>,
    /// When nothing is past `after` yet, wait this long for output, milliseconds.
    pub wait_ms: u32,
}

/// A new terminal id: `t` and 16 random hex digits, so one cannot be guessed from another.
fn new_terminal_id() -> Result<String, Error> {
    Ok(format!("t{}", random_hex(8)?))
}

fn to_api(ws: &str, p: PtyInfo) -> Terminal {
    Terminal {
        id: p.id,
        workstation_id: ws.into(),
        rows: p.rows,
        cols: p.cols,
        argv: p.argv,
        user: p.user,
        created_unix_ms: p.created_unix_ms,
        attached: p.attached,
        title: p.title,
        exit_code: p.exited.and_then(|e| e.code),
        exit_signal: p.exited.and_then(|e| e.signal),
        exited: p.exited.is_some(),
        ended_unix_ms: None,
    }
}

/// An ended session, from its record.
fn ended(ws: &str, r: TerminalRow) -> Terminal {
    Terminal {
        id: r.id,
        workstation_id: ws.into(),
        rows: r.rows,
        cols: r.cols,
        argv: r.argv,
        user: r.user,
        created_unix_ms: r.created_ms,
        attached: 0,
        title: String::new(),
        exit_code: None,
        exit_signal: None,
        exited: true,
        ended_unix_ms: r.ended_ms,
    }
}

/// A terminal's size, checked, the field at fault named.
fn check_size(rows: u16, cols: u16) -> Result<(), Error> {
    validate_size(rows, cols).map_err(|m| Error::invalid(if rows == 0 || rows > MAX_ROWS { "rows" } else { "cols" }, m))
}

impl Service {
    /// Records a session the agent of workstation `ws` opened (its event too).
    pub(crate) fn record_opened(&self, ws: &str, info: &PtyInfo) -> Result<(), Error> {
        let record = TerminalRow {
            id: info.id.clone(),
            argv: info.argv.clone(),
            user: info.user.clone(),
            rows: info.rows,
            cols: info.cols,
            created_ms: info.created_unix_ms,
            ended_ms: None,
        };
        Ok(self.store.open_terminal(ws, &record, unix_ms_now())?)
    }

    /// Opens a terminal in a running workstation.
    pub async fn open_terminal(self: &Arc<Self>, who: &Principal, id: &str, req: CreateTerminal) -> Result<Terminal, Error> {
        who.may(Scope::Write)?;
        let (rows, cols) = (req.rows.unwrap_or(24), req.cols.unwrap_or(80));
        check_size(rows, cols)?;
        let user = req.user.unwrap_or_else(|| self.config.defaults.user.clone());
        let spec = PtySpec { id: Some(new_terminal_id()?), argv: req.argv, user: Some(user), rows, cols, ..PtySpec::default() };
        spec.validate().map_err(|m| Error::invalid("argv", m))?;
        let (who, id) = (who.clone(), id.to_string());
        self.run(move |s| {
            let info = s.agent(&who, &id, Level::Use)?.pty_open(spec).map_err(agent_error)?;
            s.record_opened(&id, &info)?;
            s.audit(&who.user, "open_terminal", &id, &format!("{}: {}", info.id, info.argv.join(" ")));
            Ok(to_api(&id, info))
        })
        .await
    }

    /// A workstation's terminals: the sessions it runs now, then the records of ended ones
    /// (closed, or lost when it stopped), newest last.
    pub async fn terminals(self: &Arc<Self>, who: &Principal, id: &str) -> Result<Vec<Terminal>, Error> {
        let (who, id) = (who.clone(), id.to_string());
        self.run(move |s| {
            // Its terminals live in its memory: a hibernated one is woken to list them.
            let row = s.visible_as(&who, &id, Level::View)?;
            s.wake_if_hibernated(&row, "woken to list its terminals")?;
            let live = match s.backend.agent(&id, crate::AGENT_TIMEOUT) {
                Ok(mut agent) => agent.pty_list().map_err(agent_error)?,
                // Not running: nothing is live.
                Err(hearth_runtime::RuntimeError::Conflict { .. }) => Vec::new(),
                Err(e) => return Err(e.into()),
            };
            let mut records = s.store.terminals(&id)?;
            // Records whose session the agent no longer has ended with their VM.
            let gone: Vec<&str> = records.iter().filter(|r| r.ended_ms.is_none() && !live.iter().any(|p| p.id == r.id)).map(|r| r.id.as_str()).collect();
            if !gone.is_empty() {
                s.store.end_terminals(&id, &gone, false, unix_ms_now())?;
                records = s.store.terminals(&id)?;
            }
            let mut out: Vec<Terminal> = live.into_iter().map(|p| to_api(&id, p)).collect();
            out.extend(records.into_iter().filter(|r| r.ended_ms.is_some()).map(|r| ended(&id, r)));
            Ok(out)
        })
        .await
    }

    /// Closes a terminal (its processes are hung up, then killed).
    pub async fn close_terminal(self: &Arc<Self>, who: &Principal, id: &str, tid: &str) -> Result<(), Error> {
        who.may(Scope::Write)?;
        let (who, id, tid) = (who.clone(), id.to_string(), tid.to_string());
        self.run(move |s| {
            s.agent(&who, &id, Level::Use)?.pty_ok(&Request::PtyClose { id: tid.clone() }).map_err(agent_error)?;
            s.store.end_terminals(&id, &[&tid], true, unix_ms_now())?;
            s.audit(&who.user, "close_terminal", &id, &tid);
            Ok(())
        })
        .await
    }

    /// Attaches to a terminal: its replay (scrollback and screen) and the connection its live
    /// output comes on and keystrokes go to (docs/terminal-protocol.md says how an edge uses it).
    pub async fn attach_terminal(self: &Arc<Self>, who: &Principal, id: &str, tid: &str, mode: AttachMode) -> Result<PtyStream<UnixStream>, Error> {
        if mode == AttachMode::Write {
            who.may(Scope::Write)?;
        }
        let (who, id, tid) = (who.clone(), id.to_string(), tid.to_string());
        self.run(move |s| {
            let need = if mode == AttachMode::View { Level::View } else { Level::Use };
            let stream = s.agent(&who, &id, need)?.pty_attach(&tid, None, mode == AttachMode::View).map_err(agent_error)?;
            s.audit(&who.user, "attach", &id, &format!("{tid} ({})", if mode == AttachMode::View { "view" } else { "write" }));
            Ok(stream)
        })
        .await
    }

    /// Types `data` into a terminal.
    pub async fn terminal_input(self: &Arc<Self>, who: &Principal, id: &str, tid: &str, data: String) -> Result<(), Error> {
        who.may(Scope::Write)?;
        if data.len() > MAX_PTY_WRITE {
            return Err(Error::TooLarge(format!("data: {} bytes; at most {MAX_PTY_WRITE} at once", data.len())));
        }
        let (who, id, tid) = (who.clone(), id.to_string(), tid.to_string());
        self.run(move |s| {
            let mut agent = s.agent(&who, &id, Level::Use)?;
            let _in_use = s.activity.using(&id);
            agent.pty_ok(&Request::PtyWrite { id: tid, data }).map_err(agent_error)
        })
        .await
    }

    /// A terminal's output from an offset on (see [`ReadFrom`]).
    pub async fn terminal_output(self: &Arc<Self>, who: &Principal, id: &str, tid: &str, from: ReadFrom) -> Result<TerminalOutput, Error> {
        if from.wait_ms > MAX_PTY_WAIT_MS {
            return Err(Error::invalid("wait_ms", format!("at most {MAX_PTY_WAIT_MS}")));
        }
        if from.max_bytes.is_some_and(|n| n == 0 || n > MAX_PTY_READ) {
            return Err(Error::invalid("max_bytes", format!("1-{MAX_PTY_READ}")));
        }
        let (who, id, tid) = (who.clone(), id.to_string(), tid.to_string());
        self.run(move |s| {
            let mut agent = s.agent(&who, &id, Level::View)?;
            let _in_use = s.activity.using(&id);
            let out = agent.pty_read(&tid, from.after, from.max_bytes, from.wait_ms).map_err(agent_error)?;
            let keep = if out.exited.is_some() { 0 } else { cut_tail(&out.data) };
            let used = out.data.len() - keep;
            Ok(TerminalOutput {
                data: String::from_utf8_lossy(&out.data[..used]).into_owned(),
                start: out.start,
                next: out.start + used as u64,
                missed: out.start.saturating_sub(from.after),
                exited: out.exited.is_some(),
            })
        })
        .await
    }

    /// What a terminal's screen shows now.
    pub async fn terminal_screen(self: &Arc<Self>, who: &Principal, id: &str, tid: &str) -> Result<TerminalScreen, Error> {
        let (who, id, tid) = (who.clone(), id.to_string(), tid.to_string());
        self.run(move |s| match s.agent(&who, &id, Level::View)?.pty_screen(&tid).map_err(agent_error)? {
            Event::PtyScreen { rows, cols, cursor_row, cursor_col, text, title, exited } => {
                Ok(TerminalScreen { text, rows, cols, cursor_row, cursor_col, title, exited: exited.is_some() })
            }
            other => Err(Error::internal(format!("the agent answered a screen with {other:?}"))),
        })
        .await
    }

    /// Resizes a terminal (its program gets SIGWINCH; attached clients are told).
    pub async fn resize_terminal(self: &Arc<Self>, who: &Principal, id: &str, tid: &str, rows: u16, cols: u16) -> Result<(), Error> {
        who.may(Scope::Write)?;
        check_size(rows, cols)?;
        let (who, id, tid) = (who.clone(), id.to_string(), tid.to_string());
        self.run(move |s| s.agent(&who, &id, Level::Use)?.pty_ok(&Request::PtyResize { id: tid, rows, cols }).map_err(agent_error)).await
    }
}
