//! Files in a workstation: an upload replaces a file atomically with bytes read from the
//! caller, a download copies one out to the caller. Both are bounded by
//! `limits.max_file_bytes`; the bytes stream through, never held whole.

use std::io::{Read, Write};
use std::sync::Arc;

use hearth_exec::WriteFile;
use hearth_proto::control::{validate_path, MAX_PATH_LEN};

use crate::error::{agent_error, Error};
use crate::principal::{Principal, Scope};
use crate::sharing::Level;
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

/// Longest path a caller may name, in characters: the agent's limit is in bytes, and a
/// character takes at most four of them, so a path within this always fits it.
pub const MAX_PATH_CHARS: usize = MAX_PATH_LEN / 4;

/// Checks a path a caller names: absolute, no NUL, at most [`MAX_PATH_CHARS`] characters.
pub fn check_path(path: &str) -> Result<(), Error> {
    if path.chars().count() > MAX_PATH_CHARS {
        return Err(Error::invalid("path", format!("at most {MAX_PATH_CHARS} characters")));
    }
    validate_path(path).map_err(|m| Error::invalid("path", m))
}

/// The form of permission bits a caller gives: 1-4 octal digits.
pub const MODE_PATTERN: &str = "^[0-7]{1,4}$";

/// Parses octal permission bits (`644`): 1-4 digits 0-7, nothing else (no sign, no space).
pub fn parse_mode(mode: &str) -> Result<u32, Error> {
    let digits = (1..=4).contains(&mode.len()) && mode.bytes().all(|b| (b'0'..=b'7').contains(&b));
    digits.then(|| u32::from_str_radix(mode, 8).ok()).flatten().ok_or_else(|| Error::invalid("mode", "1-4 octal digits, e.g. 644"))
}

impl Service {
    /// Writes `up.size` bytes from `src` to `up.path` (missing parents made), as the
    /// default user; the file appears whole or not at all.
    pub async fn upload(self: &Arc<Self>, who: &Principal, id: &str, up: Upload, mut src: Box<dyn Read + Send>) -> Result<(), Error> {
        who.may(Scope::Write)?;
        check_path(&up.path)?;
        let max = self.config.limits.max_file_bytes;
        if up.size > max {
            return Err(Error::TooLarge(format!("files are limited to {max} bytes")));
        }
        let (who, id) = (who.clone(), id.to_string());
        self.run(move |s| {
            let agent = s.agent(&who, &id, Level::Use)?;
            let _in_use = s.activity.using(&id);
            let spec = WriteFile { path: &up.path, size: up.size, mode: up.mode, user: Some(&s.config.defaults.user), create_dirs: true };
            agent.write_file(spec, &mut src).map_err(agent_error)?;
            s.audit(&who.user, "upload", &id, &format!("{} ({} bytes)", up.path, up.size));
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
        self.run(move |s| {
            let agent = s.agent(&who, &id, Level::View)?;
            let _in_use = s.activity.using(&id);
            let n = agent.read_file(&path, Some(max), &mut out).map_err(agent_error)?;
            s.audit(&who.user, "download", &id, &format!("{path} ({n} bytes)"));
            Ok(n)
        })
        .await
    }
}
