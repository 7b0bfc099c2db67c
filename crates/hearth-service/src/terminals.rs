//! Terminals in a workstation: open, list, close, attach. A terminal lives in the
//! workstation's agent, not here: a server restart or a browser reconnect re-attaches and
//! gets the exact screen back. The store keeps records of them, so ended ones can still be
//! listed.

use std::os::unix::net::UnixStream;
use std::sync::Arc;

use hearth_exec::PtyStream;
use hearth_proto::api::{CreateTerminal, Terminal};
use hearth_proto::control::{validate_size, PtyInfo, PtySpec, Request, MAX_ROWS};
use hearth_proto::unix_ms_now;

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

impl Service {
    /// Opens a terminal in a running workstation.
    pub async fn open_terminal(self: &Arc<Self>, who: &Principal, id: &str, req: CreateTerminal) -> Result<Terminal, Error> {
        who.may(Scope::Write)?;
        let (rows, cols) = (req.rows.unwrap_or(24), req.cols.unwrap_or(80));
        validate_size(rows, cols).map_err(|m| Error::invalid(if rows == 0 || rows > MAX_ROWS { "rows" } else { "cols" }, m))?;
        let user = req.user.unwrap_or_else(|| self.config.defaults.user.clone());
        let spec = PtySpec { id: Some(new_terminal_id()?), argv: req.argv, user: Some(user), rows, cols, ..PtySpec::default() };
        spec.validate().map_err(|m| Error::invalid("argv", m))?;
        let (who, id) = (who.clone(), id.to_string());
        self.run(move |s| {
            let info = s.agent(&who, &id, Level::Use)?.pty_open(spec).map_err(agent_error)?;
            let record = TerminalRow {
                id: info.id.clone(),
                argv: info.argv.clone(),
                user: info.user.clone(),
                rows: info.rows,
                cols: info.cols,
                created_ms: info.created_unix_ms,
                ended_ms: None,
            };
            s.store.open_terminal(&id, &record, unix_ms_now())?;
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
}
