//! What runs inside the box: `hearth box init` (PID 1), which serves the control protocol.

pub mod init;
