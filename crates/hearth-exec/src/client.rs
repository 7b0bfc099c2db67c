//! The calling side: hello, then one request per connection.

use std::io::Write;
use std::time::Duration;

use hearth_proto::control::{Event, ExecSpec, Request, PROTOCOL_VERSION, TAG_CONTROL, TAG_STDERR, TAG_STDOUT};
use hearth_proto::frame::{read_frame, write_frame};

use crate::conn::Conn;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("refused: {0}")]
    Refused(String),
    #[error("{what} failed")]
    Io { what: &'static str, #[source] source: std::io::Error },
}

impl From<hearth_proto::FrameError> for ExecError {
    fn from(e: hearth_proto::FrameError) -> Self {
        ExecError::Protocol(e.to_string())
    }
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecExit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub truncated: bool,
}

impl ExecExit {
    /// A shell-style exit status: the code, or 128 + the signal.
    pub fn status(&self) -> i32 {
        self.code.unwrap_or_else(|| 128 + self.signal.unwrap_or(0))
    }
}

/// One connection that has said hello.
pub struct ExecClient<C: Conn> {
    conn: C,
    /// The server's uptime when it answered hello.
    pub uptime_ms: u64,
    pub capabilities: Vec<String>,
}

impl<C: Conn> ExecClient<C> {
    /// Says hello on a fresh connection; `timeout` bounds the exchange.
    pub fn hello(mut conn: C, token: Option<&str>, timeout: Duration) -> Result<Self, ExecError> {
        let io = |what| move |source| ExecError::Io { what, source };
        conn.set_read_timeout_conn(Some(timeout)).map_err(io("setting a read timeout"))?;
        send(&mut conn, &Request::Hello { version: PROTOCOL_VERSION, token: token.map(str::to_string) })?;
        let (uptime_ms, capabilities) = match recv_control(&mut conn)? {
            Some(Event::Hello { version, uptime_ms, capabilities }) if version == PROTOCOL_VERSION => (uptime_ms, capabilities),
            Some(Event::Hello { version, .. }) => {
                return Err(ExecError::Protocol(format!("server speaks version {version}, we speak {PROTOCOL_VERSION}")))
            }
            Some(Event::Error { message }) => return Err(ExecError::Refused(message)),
            other => return Err(ExecError::Protocol(format!("expected hello, got {other:?}"))),
        };
        conn.set_read_timeout_conn(None).map_err(io("clearing the read timeout"))?;
        Ok(Self { conn, uptime_ms, capabilities })
    }

    /// Runs a command, copying its output to `stdout` and `stderr` as it comes.
    pub fn exec(mut self, spec: ExecSpec, stdout: &mut dyn Write, stderr: &mut dyn Write) -> Result<ExecExit, ExecError> {
        // Nothing may hang: the server's own limits end a command, plus a margin for the wire.
        let wait = spec.timeout_secs.map(|t| Duration::from_secs(t + 30));
        self.conn.set_read_timeout_conn(wait).map_err(|source| ExecError::Io { what: "setting a read timeout", source })?;
        send(&mut self.conn, &Request::Exec(spec))?;
        loop {
            let Some(frame) = read_frame(&mut self.conn)? else {
                return Err(ExecError::Protocol("the server closed the connection before the command ended".into()));
            };
            let written = match frame.tag {
                TAG_STDOUT => stdout.write_all(&frame.payload).and_then(|()| stdout.flush()),
                TAG_STDERR => stderr.write_all(&frame.payload).and_then(|()| stderr.flush()),
                TAG_CONTROL => match parse_event(&frame.payload)? {
                    Event::Started { .. } => Ok(()),
                    Event::Exited { code, signal, timed_out, truncated } => return Ok(ExecExit { code, signal, timed_out, truncated }),
                    Event::Error { message } => return Err(ExecError::Refused(message)),
                    other => return Err(ExecError::Protocol(format!("unexpected {other:?}"))),
                },
                t => return Err(ExecError::Protocol(format!("unknown frame tag {t}"))),
            };
            written.map_err(|source| ExecError::Io { what: "writing command output", source })?;
        }
    }

    /// Runs a command and collects its output (for short commands).
    pub fn exec_collect(self, spec: ExecSpec) -> Result<(ExecExit, Vec<u8>, Vec<u8>), ExecError> {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let exit = self.exec(spec, &mut out, &mut err)?;
        Ok((exit, out, err))
    }

    /// Asks for the server's health.
    pub fn health(mut self) -> Result<Event, ExecError> {
        send(&mut self.conn, &Request::Health)?;
        match recv_control(&mut self.conn)? {
            Some(ev @ Event::Health { .. }) => Ok(ev),
            Some(Event::Error { message }) => Err(ExecError::Refused(message)),
            other => Err(ExecError::Protocol(format!("expected health, got {other:?}"))),
        }
    }

    /// Sets the server's wall clock.
    pub fn set_time(mut self, unix_ms: u64) -> Result<(), ExecError> {
        send(&mut self.conn, &Request::SetTime { unix_ms })?;
        match recv_control(&mut self.conn)? {
            Some(Event::TimeSet) => Ok(()),
            Some(Event::Error { message }) => Err(ExecError::Refused(message)),
            other => Err(ExecError::Protocol(format!("expected time_set, got {other:?}"))),
        }
    }

    /// Asks the server to stop everything and power off; returns once acknowledged.
    pub fn shutdown(mut self) -> Result<(), ExecError> {
        send(&mut self.conn, &Request::Shutdown)?;
        match recv_control(&mut self.conn)? {
            Some(Event::ShuttingDown) | None => Ok(()),
            other => Err(ExecError::Protocol(format!("expected shutting_down, got {other:?}"))),
        }
    }
}

fn send<C: Conn>(conn: &mut C, req: &Request) -> Result<(), ExecError> {
    write_frame(conn, TAG_CONTROL, &serde_json::to_vec(req).expect("requests serialize"))?;
    Ok(())
}

fn recv_control<C: Conn>(conn: &mut C) -> Result<Option<Event>, ExecError> {
    match read_frame(conn)? {
        None => Ok(None),
        Some(f) if f.tag == TAG_CONTROL => parse_event(&f.payload).map(Some),
        Some(f) => Err(ExecError::Protocol(format!("expected a control frame, got tag {}", f.tag))),
    }
}

fn parse_event(payload: &[u8]) -> Result<Event, ExecError> {
    serde_json::from_slice(payload).map_err(|e| ExecError::Protocol(format!("bad control message: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_proto::frame::read_frame;
    use std::os::unix::net::UnixStream;

    /// A server that says hello, takes the exec, starts streaming, then drops the connection.
    fn dying_server(conn: UnixStream) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let mut c = conn;
            read_frame(&mut c).unwrap();
            send_event(&mut c, &Event::Hello { version: PROTOCOL_VERSION, uptime_ms: 1, capabilities: vec![] });
            read_frame(&mut c).unwrap();
            send_event(&mut c, &Event::Started { pid: 9 });
            write_frame(&mut c, TAG_STDOUT, b"partial").unwrap();
        })
    }

    fn send_event(c: &mut UnixStream, ev: &Event) {
        write_frame(c, TAG_CONTROL, &serde_json::to_vec(ev).unwrap()).unwrap();
    }

    #[test]
    fn a_connection_dropped_mid_exec_is_a_clear_error_not_a_hang() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let server = dying_server(theirs);
        let client = ExecClient::hello(ours, None, Duration::from_secs(5)).unwrap();
        let mut out = Vec::new();
        let err = client.exec(ExecSpec::new(["sleep", "100"]), &mut out, &mut std::io::sink()).unwrap_err();
        server.join().unwrap();
        assert_eq!(out, b"partial");
        assert!(err.to_string().contains("closed the connection before the command ended"), "{err}");
    }

    #[test]
    fn a_silent_server_times_out_at_hello() {
        // The peer stays open and says nothing: only the hello timeout can end this call.
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let Err(err) = ExecClient::hello(ours, None, Duration::from_millis(300)) else { panic!("hello succeeded with a mute peer") };
        assert!(err.to_string().contains("protocol error"), "{err}");
    }
}
