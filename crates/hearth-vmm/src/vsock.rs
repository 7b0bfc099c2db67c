//! Reaching a guest's vsock port through Firecracker's hybrid vsock: the host connects to
//! the VM's unix socket and asks `CONNECT <port>\n`; Firecracker answers `OK <host port>\n`
//! and the stream then belongs to the guest's listener.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// The `OK …` line is short; anything longer is not Firecracker.
const MAX_REPLY: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    #[error("vsock {uds}: port {port} did not answer within {timeout:?}: {last}")]
    NoAnswer { uds: String, port: u32, timeout: Duration, last: String },
}

/// One attempt: connect, CONNECT, read the reply line.
fn connect_once(uds: &Path, port: u32, io_timeout: Duration) -> Result<UnixStream, String> {
    let mut s = UnixStream::connect(uds).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(io_timeout)).map_err(|e| e.to_string())?;
    s.write_all(format!("CONNECT {port}\n").as_bytes()).map_err(|e| e.to_string())?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte: what follows the newline is the guest's and must stay in the socket.
    while line.last() != Some(&b'\n') {
        match s.read(&mut byte) {
            Ok(0) => return Err("closed before answering (no listener on that port yet?)".into()),
            Ok(_) => line.push(byte[0]),
            Err(e) => return Err(e.to_string()),
        }
        if line.len() > MAX_REPLY {
            return Err(format!("unexpected reply {:?}", String::from_utf8_lossy(&line)));
        }
    }
    if !line.starts_with(b"OK ") {
        return Err(format!("refused: {:?}", String::from_utf8_lossy(&line).trim_end()));
    }
    s.set_read_timeout(None).map_err(|e| e.to_string())?;
    Ok(s)
}

/// Connects to `port` in the guest, retrying until `timeout` (the guest may still be booting).
pub fn connect(uds: &Path, port: u32, timeout: Duration) -> Result<UnixStream, VsockError> {
    let deadline = Instant::now() + timeout;
    loop {
        match connect_once(uds, port, Duration::from_secs(2)) {
            Ok(s) => return Ok(s),
            Err(last) if Instant::now() >= deadline => return Err(VsockError::NoAnswer { uds: uds.display().to_string(), port, timeout, last }),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::os::unix::net::UnixListener;

    /// A stand-in for Firecracker's side of the handshake.
    fn fake_firecracker(reply: &'static str) -> (tempfile::TempDir, std::path::PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("v.sock");
        let l = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut r = std::io::BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            assert_eq!(line, "CONNECT 1024\n");
            let mut w = s;
            w.write_all(reply.as_bytes()).unwrap();
            w.write_all(b"guest-bytes").unwrap();
            std::thread::sleep(Duration::from_millis(200));
        });
        (d, path)
    }

    #[test]
    fn handshake_leaves_the_guest_bytes_in_the_stream() {
        let (_d, path) = fake_firecracker("OK 1073741824\n");
        let mut s = connect(&path, 1024, Duration::from_secs(2)).unwrap();
        let mut buf = [0u8; 11];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"guest-bytes");
    }

    #[test]
    fn a_missing_socket_times_out_with_the_reason() {
        let d = tempfile::tempdir().unwrap();
        let e = connect(&d.path().join("nope.sock"), 1024, Duration::from_millis(100)).unwrap_err();
        assert!(e.to_string().contains("did not answer"), "{e}");
    }
}
