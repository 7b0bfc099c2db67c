//! Files in a workstation: an upload replaces a file atomically with bytes read from the
//! caller, a download copies one out to the caller. Both are bounded by
//! `limits.max_file_bytes`; the bytes stream through, never held whole.

use std::io::{Read, Write};
use std::sync::Arc;

use hearth_exec::WriteFile;
use hearth_proto::control::validate_path;

use crate::error::{agent_error, Error};
use crate::principal::Principal;
use crate::Service;

/// Where an upload goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// Absolute path in the workstation.
    pub path: String,
    /// Permission bits (default 0644).
    pub mode: Option<u32>,
    /// Bytes the source gives; exactly these are written.
    pub size: u64,
}

/// Checks a path a caller names.
pub fn check_path(path: &str) -> Result<(), Error> {
    validate_path(path).map_err(|m| Error::invalid("path", m))
}

/// Parses octal permission bits (`644`).
pub fn parse_mode(mode: &str) -> Result<u32, Error> {
    u32::from_str_radix(mode, 8).ok().filter(|m| *m <= 0o7777).ok_or_else(|| Error::invalid("mode", "octal permission bits, e.g. 644"))
}

impl Service {
    /// Writes `up.size` bytes from `src` to `up.path` (missing parents made), as the
    /// default user; the file appears whole or not at all.
    pub async fn upload(self: &Arc<Self>, who: &Principal, id: &str, up: Upload, mut src: Box<dyn Read + Send>) -> Result<(), Error> {
        check_path(&up.path)?;
        let max = self.config.limits.max_file_bytes;
        if up.size > max {
            return Err(Error::TooLarge(format!("files are limited to {max} bytes")));
        }
        let (who, id) = (who.clone(), id.to_string());
        self.run(move |s| {
            let agent = s.agent(&who, &id)?;
            let spec = WriteFile { path: &up.path, size: up.size, mode: up.mode, user: Some(&s.config.defaults.user), create_dirs: true };
            agent.write_file(spec, &mut src).map_err(agent_error)?;
            Ok(())
        })
        .await
    }

    /// Copies the file at `path` into `out` as it is read; returns its size. `out` sees its
    /// first write only once the agent has accepted the request: an error before that
    /// (no such file, too large) means nothing was written.
    pub async fn download(self: &Arc<Self>, who: &Principal, id: &str, path: &str, mut out: Box<dyn Write + Send>) -> Result<u64, Error> {
        check_path(path)?;
        let max = self.config.limits.max_file_bytes;
        let (who, id, path) = (who.clone(), id.to_string(), path.to_string());
        self.run(move |s| s.agent(&who, &id)?.read_file(&path, Some(max), &mut out).map_err(agent_error)).await
    }
}
