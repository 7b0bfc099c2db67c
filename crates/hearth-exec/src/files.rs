//! `read_file`, `write_file`, `list_dir`: files moved as streams of bounded frames.
//!
//! Writes are atomic: the bytes go to a temporary file beside the target, which is synced,
//! given its mode and owner, and renamed over the target only once every byte arrived. A
//! client that stops halfway leaves the old file as it was and no temporary behind.
//! The server acts with its own rights (root in a guest): the workstation belongs to whoever
//! may reach its agent, so file requests are not a boundary between users; `user` only says
//! who should own what is written.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use hearth_proto::control::{DirEntry, ErrorKind, Event, DATA_CHUNK, MAX_DIR_ENTRIES, MAX_FILE_BYTES, TAG_DATA};
use hearth_proto::frame::{read_frame, write_frame};

use crate::conn::Conn;
use crate::refusal::Refusal;
use crate::reply::{refuse, send};
use crate::user;

/// A client uploading must send its next frame within this time.
const UPLOAD_STALL: Duration = Duration::from_secs(60);

pub(crate) fn read_file<C: Conn>(mut conn: C, path: &str, max_bytes: Option<u64>) -> Result<(), Refusal> {
    let limit = max_bytes.unwrap_or(MAX_FILE_BYTES).min(MAX_FILE_BYTES);
    let (mut file, meta) = match File::open(path).and_then(|f| f.metadata().map(|m| (f, m))) {
        Ok(x) => x,
        Err(e) => return refuse(&mut conn, Refusal::io(format_args!("cannot read {path}"), &e)),
    };
    if meta.is_dir() {
        return refuse(&mut conn, Refusal::invalid(format!("{path} is a directory")));
    }
    if meta.len() > limit {
        return refuse(&mut conn, Refusal::new(ErrorKind::TooLarge, format!("{path} is {} bytes, more than the limit of {limit}", meta.len())));
    }
    send(&mut conn, &Event::File { size: meta.len(), mode: meta.mode() & 0o7777 })?;
    let mut buf = vec![0u8; DATA_CHUNK];
    let mut sent = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return refuse(&mut conn, Refusal::io(format_args!("reading {path}"), &e)),
        };
        sent += n as u64;
        // Files that grow while read (logs, /proc) are still bounded.
        if sent > limit {
            return refuse(&mut conn, Refusal::new(ErrorKind::TooLarge, format!("{path} grew past the limit of {limit} bytes while read")));
        }
        write_frame(&mut conn, TAG_DATA, &buf[..n])?;
    }
    send(&mut conn, &Event::Done { bytes: sent })
}

/// What a `write_file` asks for.
pub(crate) struct WriteSpec<'a> {
    pub path: &'a str,
    pub size: u64,
    pub mode: Option<u32>,
    pub user: Option<&'a str>,
    pub create_dirs: bool,
}

pub(crate) fn write_file<C: Conn>(mut conn: C, spec: WriteSpec<'_>) -> Result<(), Refusal> {
    if spec.size > MAX_FILE_BYTES {
        return refuse(&mut conn, Refusal::new(ErrorKind::TooLarge, format!("size {} is over the limit of {MAX_FILE_BYTES} bytes", spec.size)));
    }
    let owner = match spec.user.map(user::lookup).transpose() {
        Ok(o) => o.map(|a| (a.uid, a.gid)),
        Err(e) => return refuse(&mut conn, e),
    };
    let target = Path::new(spec.path);
    let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
        return refuse(&mut conn, Refusal::invalid(format!("{} names no file", spec.path)));
    };
    if spec.create_dirs {
        if let Err(e) = create_dirs(dir, owner) {
            return refuse(&mut conn, Refusal::io(format_args!("creating {}", dir.display()), &e));
        }
    }
    if target.is_dir() {
        return refuse(&mut conn, Refusal::invalid(format!("{} is a directory", spec.path)));
    }
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(".{}.hearth-{}-{}", name.to_string_lossy(), std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed)));
    let mode = spec.mode.unwrap_or(0o644) & 0o7777;
    let file = match OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp) {
        Ok(f) => f,
        Err(e) => return refuse(&mut conn, Refusal::io(format_args!("cannot write in {}", dir.display()), &e)),
    };
    let result = receive(&mut conn, file, spec.size, mode, owner).and_then(|()| fs::rename(&tmp, target).map_err(|e| Refusal::io("renaming into place", &e)));
    match result {
        Ok(()) => {
            // The rename is durable once the directory is.
            let _ = File::open(dir).and_then(|d| d.sync_all());
            send(&mut conn, &Event::Done { bytes: spec.size })
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            refuse(&mut conn, e)
        }
    }
}

/// Takes exactly `size` bytes of `TAG_DATA` frames into `file`, then makes it durable.
fn receive<C: Conn>(conn: &mut C, mut file: File, size: u64, mode: u32, owner: Option<(u32, u32)>) -> Result<(), Refusal> {
    conn.set_read_timeout_conn(Some(UPLOAD_STALL))?;
    send(conn, &Event::Ready)?;
    let mut got = 0u64;
    while got < size {
        let frame = match read_frame(conn) {
            Ok(Some(f)) if f.tag == TAG_DATA => f,
            Ok(Some(f)) => return Err(Refusal::invalid(format!("expected file data, got a frame with tag {}", f.tag))),
            Ok(None) => return Err(Refusal::new(ErrorKind::Closed, format!("the stream ended after {got} of {size} bytes"))),
            // The frame's own kind: one too long is too large, a stream cut short closed.
            Err(e) => return Err(Refusal { message: format!("after {got} of {size} bytes: {e}"), ..e.into() }),
        };
        got += frame.payload.len() as u64;
        if got > size {
            return Err(Refusal::invalid(format!("more bytes than the announced {size}")));
        }
        file.write_all(&frame.payload).map_err(|e| Refusal::io("writing", &e))?;
    }
    file.set_permissions(fs::Permissions::from_mode(mode)).map_err(|e| Refusal::io("setting mode", &e))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid)).map_err(|e| Refusal::io("setting owner", &e))?;
    }
    file.sync_all().map_err(|e| Refusal::io("syncing", &e))
}

/// Creates `dir` and its missing parents, each owned by `owner` when given.
fn create_dirs(dir: &Path, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    let missing: Vec<PathBuf> = dir.ancestors().take_while(|p| !p.exists()).map(Path::to_path_buf).collect();
    for d in missing.iter().rev() {
        fs::create_dir(d)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(d, Some(uid), Some(gid))?;
        }
    }
    Ok(())
}

pub(crate) fn list_dir(path: &str) -> Result<Event, Refusal> {
    let read = fs::read_dir(path).map_err(|e| Refusal::io(format_args!("cannot list {path}"), &e))?;
    let mut entries = Vec::new();
    let mut truncated = false;
    for entry in read.flatten() {
        if entries.len() == MAX_DIR_ENTRIES {
            truncated = true;
            break;
        }
        let Ok(meta) = entry.metadata() else { continue }; // gone since listed
        let ft = meta.file_type();
        let kind = if ft.is_symlink() {
            "symlink"
        } else if ft.is_dir() {
            "dir"
        } else if ft.is_file() {
            "file"
        } else {
            "other"
        };
        let mtime_unix_ms = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_millis() as u64);
        entries.push(DirEntry { name: entry.file_name().to_string_lossy().into_owned(), kind: kind.into(), size: meta.len(), mode: meta.mode() & 0o7777, mtime_unix_ms });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Event::DirListing { entries, truncated })
}
