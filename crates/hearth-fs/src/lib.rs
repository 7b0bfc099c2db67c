//! File system primitives shared by hearth's components.
//!
//! - [`write_atomic`]: write a sibling temporary, fsync, rename over the target, so a reader
//!   (or a crash) sees the old file or the new one, never half of either
//!   ([`write_atomic_private`]: the same for secrets, mode 0600).
//! - [`DirLock`]: an exclusive `flock` on `<dir>/.lock`, held for the lock's lifetime, so two
//!   hearth processes never build into one cache or start one box at the same time.
//!
//! - [`create_ext4_image`]: a sparse ext4 disk image (the box's data disk, workstations'
//!   overlay disks), formatted under a temporary name and renamed into place when complete.
//! - [`punch_zeros`]: gives the file system back the blocks of a file that hold only zeros
//!   (a VM's memory snapshot: most of a guest's memory is pages it never touched).
//!
//! Errors are plain `std::io::Error`s with the path in the message; callers wrap them.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

fn with_path(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// Writes `data` to `path` atomically (temporary sibling, fsync, rename).
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    write_atomic_mode(path, data, 0o666)
}

/// [`write_atomic`] for secrets: the file is its owner's alone (mode 0600) from the moment it
/// exists, never readable by others even for an instant.
pub fn write_atomic_private(path: &Path, data: &[u8]) -> io::Result<()> {
    write_atomic_mode(path, data, 0o600)
}

fn write_atomic_mode(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| with_path(e, "writing", path))
}

/// Creates a sparse ext4 image of `bytes` at `path` with `mkfs` (mkfs.ext4), labelled
/// `label`, atomically: a half-formatted image never sits at `path`.
pub fn create_ext4_image(path: &Path, bytes: u64, label: &str, mkfs: &Path) -> io::Result<()> {
    let tmp = path.with_extension("mkfs-tmp");
    let result = (|| {
        File::create(&tmp)?.set_len(bytes)?;
        let out = std::process::Command::new(mkfs).args(["-q", "-F", "-L", label, "-E", "lazy_itable_init=1,lazy_journal_init=1"]).arg(&tmp).output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!("{}: {}", mkfs.display(), String::from_utf8_lossy(&out.stderr).trim())));
        }
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| with_path(e, "creating the ext4 image", path))
}

/// An exclusive lock on a directory, released when dropped.
pub struct DirLock {
    _flock: nix::fcntl::Flock<File>,
}

impl DirLock {
    /// Creates `dir` if needed and waits for its `.lock`.
    pub fn acquire(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir).map_err(|e| with_path(e, "creating", dir))?;
        Self::acquire_existing(dir)
    }

    /// Waits for the `.lock` of `dir`, which must exist: a directory removed meanwhile is
    /// not made again (the error is then `NotFound`). The caller checks, once it holds the
    /// lock, that what it locked is still there; a remover that renames the directory away
    /// before emptying it leaves nothing for a late caller to write into.
    pub fn acquire_existing(dir: &Path) -> io::Result<Self> {
        let path = dir.join(".lock");
        let f = fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| with_path(e, "opening", &path))?;
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).map(|flock| DirLock { _flock: flock }).map_err(|(_, e)| with_path(e.into(), "locking", &path))
    }
}

/// The block size [`punch_zeros`] looks at: a guest page.
const ZERO_BLOCK: usize = 4096;

/// Deallocates every aligned 4 KiB block of the file at `path` that holds only zeros (its
/// size and contents stay the same: those blocks read as zeros from a hole); returns the
/// bytes given back. Runs of zero blocks are punched together; a file system without hole
/// punching is an error (the file is unchanged).
pub fn punch_zeros(path: &Path) -> io::Result<u64> {
    use nix::fcntl::{fallocate, FallocateFlags};
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let mut f = fs::OpenOptions::new().read(true).write(true).open(path).map_err(|e| with_path(e, "opening", path))?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut offset, mut freed) = (0u64, 0u64);
    // The run of zero blocks not yet punched: (start, length).
    let mut run: Option<(u64, u64)> = None;
    let punch = |f: &File, (start, len): (u64, u64)| {
        fallocate(f.as_raw_fd(), FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE, start as i64, len as i64)
            .map_err(|e| with_path(e.into(), "punching holes in", path))
    };
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(with_path(e, "reading", path)),
        };
        for block in buf[..n].chunks(ZERO_BLOCK) {
            let at = offset;
            offset += block.len() as u64;
            // Eight bytes at a time, no early exit: the compiler makes this a vector loop.
            let zero = block.len() == ZERO_BLOCK && block.chunks_exact(8).fold(0u64, |acc, w| acc | u64::from_ne_bytes(w.try_into().expect("8 bytes"))) == 0;
            if zero {
                run = Some(match run {
                    Some((start, len)) => (start, len + ZERO_BLOCK as u64),
                    None => (at, ZERO_BLOCK as u64),
                });
            } else if let Some(r) = run.take() {
                punch(&f, r)?;
                freed += r.1;
            }
        }
    }
    if let Some(r) = run {
        punch(&f, r)?;
        freed += r.1;
    }
    Ok(freed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn atomic_write_replaces_whole_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1, "no temporaries left");
        assert!(write_atomic(&d.path().join("missing/dir/x"), b"x").unwrap_err().to_string().contains("missing/dir/x"));
        let secret = d.path().join("secret");
        write_atomic_private(&secret, b"s").unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&secret).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn ext4_images_are_sparse_and_formatted_or_absent() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("disk.ext4");
        let mkfs = ["/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"].iter().map(Path::new).find(|p| p.exists()).expect("e2fsprogs");
        create_ext4_image(&p, 64 << 20, "test", mkfs).unwrap();
        let md = fs::metadata(&p).unwrap();
        assert_eq!(md.len(), 64 << 20);
        assert!(std::os::unix::fs::MetadataExt::blocks(&md) * 512 < 64 << 20, "not sparse");
        let bad = d.path().join("bad.ext4");
        assert!(create_ext4_image(&bad, 64 << 20, "test", Path::new("/bin/false")).is_err());
        assert!(!bad.exists() && fs::read_dir(d.path()).unwrap().count() == 1, "leftovers after a failed mkfs");
    }

    #[test]
    fn the_lock_excludes_a_second_holder_until_dropped() {
        let d = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(d.path()).unwrap();
        let got = Arc::new(AtomicBool::new(false));
        let (dir, g) = (d.path().to_path_buf(), got.clone());
        let t = std::thread::spawn(move || {
            let _second = DirLock::acquire(&dir).unwrap();
            g.store(true, Ordering::SeqCst);
        });
        std::thread::sleep(Duration::from_millis(200));
        assert!(!got.load(Ordering::SeqCst), "second holder got the lock while the first held it");
        drop(first);
        t.join().unwrap();
        assert!(got.load(Ordering::SeqCst));
    }

    #[test]
    fn zero_blocks_become_holes_and_the_contents_stay() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("mem");
        // 4 MiB: zeros, a page of data, zeros, a byte in the last block, and a short tail.
        let mut data = vec![0u8; 4 << 20];
        data[(1 << 20)..(1 << 20) + 4096].fill(7);
        data[(4 << 20) - 1] = 1;
        data.extend_from_slice(&[0, 0, 3]);
        fs::write(&p, &data).unwrap();
        let before = fs::metadata(&p).unwrap().blocks() * 512;
        let freed = punch_zeros(&p).unwrap();
        assert_eq!(fs::read(&p).unwrap(), data, "the contents changed");
        assert_eq!(freed, (4 << 20) - 2 * 4096, "all but the two blocks with data");
        let after = fs::metadata(&p).unwrap().blocks() * 512;
        assert!(after <= before - freed + 4096 * 4, "{before} → {after} bytes on disk");
    }
}
