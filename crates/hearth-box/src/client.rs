//! The control channel client: hello with the box token, then one request.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use hearth_proto::boxctl::{BoxEvent, BoxRequest, BOX_PROTOCOL_VERSION, TAG_CONTROL, TAG_STDERR, TAG_STDOUT};
use hearth_proto::frame::{read_frame, write_frame};

use crate::BoxError;

/// How a command run in the box ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunExit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
}

impl RunExit {
    /// A shell-style exit status: the code, or 128 + the signal.
    pub fn status(&self) -> i32 {
        self.code.unwrap_or_else(|| 128 + self.signal.unwrap_or(0))
    }
}

/// One authenticated connection to the box's control server.
pub struct BoxClient {
    stream: TcpStream,
    /// The box's uptime when it answered hello.
    pub uptime_ms: u64,
}

impl BoxClient {
    /// Connects and says hello. `timeout` bounds the connect and the hello exchange.
    pub fn connect(port: u16, token: &str, timeout: Duration) -> Result<Self, BoxError> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| BoxError::io(format!("connecting to {addr}"), e))?;
        stream.set_nodelay(true).map_err(|e| BoxError::io("setting TCP_NODELAY", e))?;
        stream.set_read_timeout(Some(timeout)).map_err(|e| BoxError::io("setting a read timeout", e))?;
        let mut client = BoxClient { stream, uptime_ms: 0 };
        client.send(&BoxRequest::Hello { version: BOX_PROTOCOL_VERSION, token: token.to_string() })?;
        match client.recv_control()? {
            Some(BoxEvent::Hello { version, uptime_ms }) if version == BOX_PROTOCOL_VERSION => client.uptime_ms = uptime_ms,
            Some(BoxEvent::Hello { version, .. }) => {
                return Err(BoxError::Protocol(format!("box speaks version {version}, we speak {BOX_PROTOCOL_VERSION}")))
            }
            Some(BoxEvent::Error { message }) => return Err(BoxError::Refused(message)),
            other => return Err(BoxError::Protocol(format!("expected hello, got {other:?}"))),
        }
        client.stream.set_read_timeout(None).map_err(|e| BoxError::io("clearing the read timeout", e))?;
        Ok(client)
    }

    /// Runs a command in the box, copying its output to `stdout` and `stderr` as it comes.
    pub fn run(
        mut self,
        request: BoxRequest,
        stdout: &mut dyn Write,
        stderr: &mut dyn Write,
    ) -> Result<RunExit, BoxError> {
        self.send(&request)?;
        loop {
            let Some(frame) = read_frame(&mut self.stream)? else {
                return Err(BoxError::Protocol("the box closed the connection before the command ended".into()));
            };
            match frame.tag {
                TAG_STDOUT => stdout.write_all(&frame.payload).and_then(|()| stdout.flush()),
                TAG_STDERR => stderr.write_all(&frame.payload).and_then(|()| stderr.flush()),
                TAG_CONTROL => match parse_event(&frame.payload)? {
                    BoxEvent::Started { .. } => Ok(()),
                    BoxEvent::Exited { code, signal, timed_out } => return Ok(RunExit { code, signal, timed_out }),
                    BoxEvent::Error { message } => return Err(BoxError::Refused(message)),
                    other => return Err(BoxError::Protocol(format!("unexpected {other:?}"))),
                },
                t => return Err(BoxError::Protocol(format!("unknown frame tag {t}"))),
            }
            .map_err(|e| BoxError::io("writing command output", e))?;
        }
    }

    /// Asks the box to sync, unmount and power off. Returns once the box has acknowledged.
    pub fn shutdown(mut self) -> Result<(), BoxError> {
        self.send(&BoxRequest::Shutdown)?;
        match self.recv_control()? {
            Some(BoxEvent::ShuttingDown) | None => Ok(()),
            other => Err(BoxError::Protocol(format!("expected shutting_down, got {other:?}"))),
        }
    }

    fn send(&mut self, req: &BoxRequest) -> Result<(), BoxError> {
        let json = serde_json::to_vec(req).expect("requests serialize");
        write_frame(&mut self.stream, TAG_CONTROL, &json)?;
        Ok(())
    }

    fn recv_control(&mut self) -> Result<Option<BoxEvent>, BoxError> {
        match read_frame(&mut self.stream)? {
            None => Ok(None),
            Some(f) if f.tag == TAG_CONTROL => parse_event(&f.payload).map(Some),
            Some(f) => Err(BoxError::Protocol(format!("expected a control frame, got tag {}", f.tag))),
        }
    }
}

fn parse_event(payload: &[u8]) -> Result<BoxEvent, BoxError> {
    serde_json::from_slice(payload).map_err(|e| BoxError::Protocol(format!("bad control message: {e}")))
}
