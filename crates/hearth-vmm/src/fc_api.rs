//! A small HTTP/1.1 client for Firecracker's API socket.
//!
//! One request per connection, synchronous, with a deadline on every read and write: a
//! wedged Firecracker turns into an error, never a hang. A deadline that passes is its own
//! error ([`FcApiError::TimedOut`]) naming the call and the time waited: slow (a busy host)
//! is told apart from broken. Calls whose work grows with the guest (InstanceStart,
//! snapshots) are given their own deadline by the caller ([`ApiClient::with_timeout`]).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

/// Largest response body we accept (Firecracker's are a few KiB).
const MAX_BODY: usize = 1 << 20;

/// The deadline of a call that configures or asks (boot source, drives, machine config, the
/// balloon, pause and resume): no work in proportion to the guest's size.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum FcApiError {
    #[error("connecting to the Firecracker API at {path} failed")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Firecracker API i/o failed on {method} {uri}")]
    Io {
        method: &'static str,
        uri: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Firecracker did not answer {method} {uri} within {} s (its deadline for that call; the host may be too busy)", waited.as_secs_f64())]
    TimedOut { method: &'static str, uri: String, waited: Duration },
    #[error("Firecracker API answered {method} {uri} with a malformed response: {detail}")]
    Malformed { method: &'static str, uri: String, detail: String },
    #[error("Firecracker refused {method} {uri}: HTTP {status}: {fault}")]
    Refused { method: &'static str, uri: String, status: u16, fault: String },
}

#[derive(Debug, Clone)]
pub struct ApiClient {
    socket: PathBuf,
    timeout: Duration,
}

impl ApiClient {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self { socket: socket.into(), timeout: DEFAULT_TIMEOUT }
    }

    /// The same client with another bound on each read and write (for the calls that do
    /// work in proportion to guest memory).
    pub fn with_timeout(self, timeout: Duration) -> Self {
        Self { timeout, ..self }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// PUT a JSON body; Firecracker answers 204 on success.
    pub fn put<T: Serialize>(&self, uri: &str, body: &T) -> Result<Vec<u8>, FcApiError> {
        let json = serde_json::to_vec(body).expect("API models always serialize");
        self.request("PUT", uri, Some(&json))
    }

    pub fn patch<T: Serialize>(&self, uri: &str, body: &T) -> Result<Vec<u8>, FcApiError> {
        let json = serde_json::to_vec(body).expect("API models always serialize");
        self.request("PATCH", uri, Some(&json))
    }

    pub fn get(&self, uri: &str) -> Result<Vec<u8>, FcApiError> {
        self.request("GET", uri, None)
    }

    /// True once the socket accepts a connection (not merely exists: DESIGN.md).
    pub fn is_listening(&self) -> bool {
        UnixStream::connect(&self.socket).is_ok()
    }

    fn request(&self, method: &'static str, uri: &str, body: Option<&[u8]>) -> Result<Vec<u8>, FcApiError> {
        let timeout = self.timeout;
        let io = |source: std::io::Error| match source.kind() {
            // What a read or write past its socket deadline returns (EAGAIN, "os error 11").
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => FcApiError::TimedOut { method, uri: uri.to_string(), waited: timeout },
            _ => FcApiError::Io { method, uri: uri.to_string(), source },
        };
        let mut stream = UnixStream::connect(&self.socket).map_err(|source| FcApiError::Connect { path: self.socket.clone(), source })?;
        stream.set_read_timeout(Some(self.timeout)).map_err(io)?;
        stream.set_write_timeout(Some(self.timeout)).map_err(io)?;
        let body = body.unwrap_or_default();
        let head = format!(
            "{method} {uri} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        // One write: the request arrives whole, never split between head and body.
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        stream.write_all(&request).map_err(io)?;
        let (status, resp) = read_response(&mut BufReader::new(stream)).map_err(|e| match e {
            ReadError::Io(source) => io(source),
            ReadError::Malformed(detail) => FcApiError::Malformed { method, uri: uri.to_string(), detail },
        })?;
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        Err(FcApiError::Refused { method, uri: uri.to_string(), status, fault: fault_message(&resp) })
    }
}

enum ReadError {
    Io(std::io::Error),
    Malformed(String),
}

/// Reads a status line, headers and a Content-Length body.
fn read_response(r: &mut impl BufRead) -> Result<(u16, Vec<u8>), ReadError> {
    let mut line = String::new();
    r.read_line(&mut line).map_err(ReadError::Io)?;
    let status = line.split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok()).ok_or_else(|| ReadError::Malformed(format!("status line {:?}", line.trim_end())))?;
    let mut content_length = 0usize;
    loop {
        line.clear();
        if r.read_line(&mut line).map_err(ReadError::Io)? == 0 {
            return Err(ReadError::Malformed("headers ended early".into()));
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value.trim().parse().map_err(|_| ReadError::Malformed(format!("content-length {value:?}")))?;
            }
        }
    }
    if content_length > MAX_BODY {
        return Err(ReadError::Malformed(format!("body of {content_length} bytes")));
    }
    let mut body = vec![0; content_length];
    std::io::Read::read_exact(r, &mut body).map_err(ReadError::Io)?;
    Ok((status, body))
}

/// Firecracker's error bodies are `{"fault_message": "..."}`.
fn fault_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("fault_message").and_then(|m| m.as_str()).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixListener;

    /// Serves one canned response on a unix socket and returns what the client sent.
    fn serve_once(response: &'static str) -> (tempfile::TempDir, PathBuf, std::thread::JoinHandle<String>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let h = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            // Read the whole request (head, then Content-Length bytes) before answering.
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).map_or(0, |v| v.trim().parse::<usize>().unwrap());
                    if body.len() >= len || n == 0 {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            s.write_all(response.as_bytes()).unwrap();
            String::from_utf8_lossy(&got).into_owned()
        });
        (dir, path, h)
    }

    #[test]
    fn put_sends_json_and_accepts_204() {
        let (_d, path, h) = serve_once("HTTP/1.1 204 \r\nServer: Firecracker API\r\n\r\n");
        let body = crate::models::MachineConfig { vcpu_count: 1, mem_size_mib: 128, smt: None };
        ApiClient::new(&path).put("/machine-config", &body).unwrap();
        let sent = h.join().unwrap();
        assert!(sent.starts_with("PUT /machine-config HTTP/1.1\r\n"), "{sent}");
        assert!(sent.ends_with(r#"{"vcpu_count":1,"mem_size_mib":128}"#), "{sent}");
    }

    #[test]
    fn refusals_carry_the_fault_message() {
        let (_d, path, _h) = serve_once("HTTP/1.1 400 \r\nContent-Type: application/json\r\nContent-Length: 32\r\n\r\n{\"fault_message\":\"bad vcpu cnt\"}\n");
        let err = ApiClient::new(&path).get("/machine-config").unwrap_err();
        match err {
            FcApiError::Refused { status, fault, .. } => assert_eq!((status, fault.as_str()), (400, "bad vcpu cnt")),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_call_past_its_deadline_is_a_timeout_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        // Accepts, reads, never answers: a Firecracker too busy to.
        let listener = UnixListener::bind(&path).unwrap();
        let _h = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            while s.read(&mut buf).is_ok_and(|n| n > 0) {}
        });
        let err = ApiClient::new(&path).with_timeout(Duration::from_millis(200)).put("/actions", &serde_json::json!({"action_type": "InstanceStart"})).unwrap_err();
        assert!(matches!(&err, FcApiError::TimedOut { method: "PUT", uri, waited } if uri == "/actions" && *waited == Duration::from_millis(200)), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("PUT /actions within 0.2 s") && !text.contains("os error"), "{text}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let (_d, path, _h) = serve_once("SSH-2.0-nope\r\n");
        assert!(matches!(ApiClient::new(&path).get("/"), Err(FcApiError::Malformed { .. })));
    }
}
