//! The control protocol ([`hearth_proto::control`]) over any stream: a server that runs
//! commands for a remote caller and a client that asks it to.
//!
//! Layout:
//! - [`conn`]: the streams it runs over (TCP into the box, vsock into guests, unix sockets
//!   in tests and to Firecracker's vsock socket on the host).
//! - [`server`]: one connection's life: hello (and token), requests, limits, timeouts.
//! - [`exec`]: running one command, streaming its stdin, stdout and stderr.
//! - [`files`]: reading, writing (atomically) and listing files.
//! - [`pty`]: terminal sessions that outlive their connections: screen, scrollback, attach.
//! - [`refusal`]: the serving side's typed error ([`Refusal`]: an [`ErrorKind`] and a message).
//! - `reply`: sending events and refusals on a connection, for every request handler.
//! - [`client`]: the caller's side.
//! - [`stream`]: an attach stream's bytes without I/O: the keystroke and resize encoders and
//!   the [`stream::Decoder`] of the server's frames into [`PtyEvent`]s.
//! - [`user`]: running a command as another user (uid, gid, groups, home).
//!
//! The box's init and the guest agent both serve this; neither owns it.

pub mod client;
pub mod conn;
mod exec;
mod files;
mod outlet;
pub mod pty;
pub mod refusal;
mod reply;
pub mod server;
pub mod stream;
pub mod user;

pub use client::{ExecClient, ExecError, ExecExit, PtyInput, PtyOutput, PtyStream, WriteFile};
pub use conn::Conn;
pub use hearth_proto::control::ErrorKind;
pub use refusal::Refusal;
pub use server::{serve_conn, ConnLimit, ServerConfig};
pub use stream::PtyEvent;
