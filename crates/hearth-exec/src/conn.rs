//! Streams the protocol runs over.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// A connected, full-duplex byte stream that can be cloned (one reader, one writer); a
/// socket (a terminal's output may be written to it without blocking).
pub trait Conn: Read + Write + AsFd + Send + Sized + 'static {
    fn try_clone_conn(&self) -> io::Result<Self>;
    fn shutdown_conn(&self);
    fn set_read_timeout_conn(&self, t: Option<Duration>) -> io::Result<()>;
    fn set_write_timeout_conn(&self, t: Option<Duration>) -> io::Result<()>;
}

macro_rules! impl_conn {
    ($t:ty) => {
        impl Conn for $t {
            fn try_clone_conn(&self) -> io::Result<Self> {
                self.try_clone()
            }
            fn shutdown_conn(&self) {
                let _ = self.shutdown(Shutdown::Both);
            }
            fn set_read_timeout_conn(&self, t: Option<Duration>) -> io::Result<()> {
                self.set_read_timeout(t)
            }
            fn set_write_timeout_conn(&self, t: Option<Duration>) -> io::Result<()> {
                self.set_write_timeout(t)
            }
        }
    };
}

impl_conn!(TcpStream);
impl_conn!(UnixStream);
impl_conn!(vsock::VsockStream);
