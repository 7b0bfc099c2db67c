//! What runs inside the box: `hearth box init` (PID 1) and its control server.

pub mod init;
pub mod server;
