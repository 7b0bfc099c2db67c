//! Connecting to the box's control server (the control protocol over forwarded TCP).

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use hearth_exec::ExecClient;

use crate::BoxError;

/// An authenticated connection to the box.
pub type BoxClient = ExecClient<TcpStream>;

/// Connects to the forwarded port on loopback and says hello with the box's token.
/// `timeout` bounds the connect and the hello exchange.
pub fn connect(port: u16, token: &str, timeout: Duration) -> Result<BoxClient, BoxError> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| BoxError::io(format!("connecting to {addr}"), e))?;
    stream.set_nodelay(true).map_err(|e| BoxError::io("setting TCP_NODELAY", e))?;
    Ok(ExecClient::hello(stream, Some(token), timeout)?)
}
