//! The content-addressed artifact cache.
//!
//! Layout under the cache root:
//! ```text
//! <kind>/<hash>/            one finished artifact: its files + meta.json
//! refs.json                 names -> "<kind>/<hash>" (what `image build` last produced)
//! tmp/<kind>-<hash>-<pid>/  builds in progress; renamed into place when complete
//! logs/<kind>-<hash>.log    one log per build step
//! .lock                     held while building or collecting garbage
//! ```
//! An artifact directory exists only once complete: builds write into `tmp/` and rename,
//! so an interrupted build never leaves a half artifact behind.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hearth_fs::DirLock;
use serde::{Deserialize, Serialize};

use crate::ImageError;

/// What the cache records about one artifact.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub kind: String,
    pub hash: String,
    /// Human-readable summary of the inputs that produced the hash.
    pub inputs: Vec<String>,
    pub built_at: u64,
    pub build_secs: f64,
    /// Sizes measured once at build time (the unpacked kernel source is 70k files: not
    /// something to walk on every lookup). Zero in metas written before they were recorded.
    #[serde(default)]
    pub apparent_bytes: u64,
    #[serde(default)]
    pub disk_bytes: u64,
}

/// One artifact found in the cache.
#[derive(Debug, Clone, Serialize)]
pub struct Artifact {
    pub kind: String,
    pub hash: String,
    pub dir: PathBuf,
    pub built_at: u64,
    pub build_secs: f64,
    /// Sum of file lengths.
    pub apparent_bytes: u64,
    /// Sum of allocated blocks (images are sparse).
    pub disk_bytes: u64,
}

impl Artifact {
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn id(&self) -> String {
        format!("{}/{}", self.kind, self.hash)
    }
}

#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Waits for and takes the cache lock: one builder or collector at a time.
    pub fn lock(&self) -> Result<DirLock, ImageError> {
        DirLock::acquire(&self.root).map_err(|e| ImageError::io("locking the cache", e))
    }

    pub fn log_path(&self, kind: &str, hash: &str) -> PathBuf {
        self.root.join("logs").join(format!("{kind}-{hash}.log"))
    }

    /// The finished artifact of that kind and hash, if the cache has it.
    pub fn get(&self, kind: &str, hash: &str) -> Option<Artifact> {
        let dir = self.root.join(kind).join(hash);
        let meta: Meta = serde_json::from_slice(&fs::read(dir.join("meta.json")).ok()?).ok()?;
        let (apparent_bytes, disk_bytes) = match (meta.apparent_bytes, meta.disk_bytes) {
            (0, 0) => dir_sizes(&dir),
            sizes => sizes,
        };
        Some(Artifact { kind: meta.kind, hash: meta.hash, dir, built_at: meta.built_at, build_secs: meta.build_secs, apparent_bytes, disk_bytes })
    }

    /// Returns the cached artifact, or runs `build` into a fresh temporary directory and
    /// renames it into place. `build` gets the output directory and the step's log path.
    pub fn get_or_build(&self, kind: &str, hash: &str, inputs: Vec<String>, build: impl FnOnce(&Path, &Path) -> Result<(), ImageError>) -> Result<(Artifact, bool), ImageError> {
        if let Some(a) = self.get(kind, hash) {
            return Ok((a, false));
        }
        let tmp = self.root.join("tmp").join(format!("{kind}-{hash}-{}", std::process::id()));
        remove_tree(&tmp)?;
        let out = tmp.join("out");
        fs::create_dir_all(&out).map_err(|e| ImageError::io(format!("creating {}", out.display()), e))?;
        let log = self.log_path(kind, hash);
        fs::create_dir_all(log.parent().expect("log path has a parent")).map_err(|e| ImageError::io("creating the log directory", e))?;
        let started = Instant::now();
        let result = build(&out, &log);
        let finished = result.and_then(|()| {
            let (apparent_bytes, disk_bytes) = dir_sizes(&out);
            let meta = Meta { kind: kind.into(), hash: hash.into(), inputs, built_at: now_secs(), build_secs: started.elapsed().as_secs_f64(), apparent_bytes, disk_bytes };
            write_atomic(&out.join("meta.json"), &serde_json::to_vec_pretty(&meta).expect("meta serializes"))?;
            let dest = self.root.join(kind).join(hash);
            fs::create_dir_all(dest.parent().expect("artifact dir has a parent")).map_err(|e| ImageError::io("creating the artifact kind directory", e))?;
            fs::rename(&out, &dest).map_err(|e| ImageError::io(format!("renaming into {}", dest.display()), e))
        });
        // The temporary tree goes whether the build worked or not; the log stays.
        let cleaned = remove_tree(&tmp);
        finished?;
        cleaned?;
        let a = self.get(kind, hash).ok_or_else(|| ImageError::Corrupt(format!("{kind}/{hash} vanished after build")))?;
        Ok((a, true))
    }

    pub fn refs(&self) -> BTreeMap<String, String> {
        fs::read(self.root.join("refs.json")).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    /// The artifact a name refers to, if both exist.
    pub fn resolve(&self, name: &str) -> Option<Artifact> {
        let id = self.refs().get(name)?.clone();
        let (kind, hash) = id.split_once('/')?;
        self.get(kind, hash)
    }

    /// The path of `file` in the artifact `name` refers to, or an error saying how to get it.
    pub fn resolve_file(&self, name: &str, file: &str) -> Result<PathBuf, ImageError> {
        self.resolve(name).map(|a| a.file(file)).ok_or_else(|| ImageError::MissingArtifact(name.to_string()))
    }

    /// Points `name` at an artifact (atomically rewrites refs.json). Hold the lock.
    pub fn set_ref(&self, name: &str, artifact: &Artifact) -> Result<(), ImageError> {
        let mut refs = self.refs();
        refs.insert(name.to_string(), artifact.id());
        write_atomic(&self.root.join("refs.json"), &serde_json::to_vec_pretty(&refs).expect("refs serialize"))
    }

    /// Every finished artifact, sorted by kind then build time.
    pub fn list(&self) -> Vec<Artifact> {
        let mut out = Vec::new();
        let Ok(kinds) = fs::read_dir(&self.root) else { return out };
        for kind in kinds.flatten() {
            let name = kind.file_name().to_string_lossy().into_owned();
            if matches!(name.as_str(), "tmp" | "logs") || !kind.path().is_dir() {
                continue;
            }
            for h in fs::read_dir(kind.path()).into_iter().flatten().flatten() {
                if let Some(a) = self.get(&name, &h.file_name().to_string_lossy()) {
                    out.push(a);
                }
            }
        }
        out.sort_by(|a, b| (&a.kind, a.built_at).cmp(&(&b.kind, b.built_at)));
        out
    }

    /// Removes artifacts no ref names, leftovers of interrupted builds, and their logs.
    /// Returns what was removed. Hold the lock.
    pub fn gc(&self) -> Result<Vec<String>, ImageError> {
        let live: Vec<String> = self.refs().into_values().collect();
        let mut removed = Vec::new();
        for a in self.list() {
            if !live.contains(&a.id()) {
                remove_tree(&a.dir)?;
                let _ = fs::remove_file(self.log_path(&a.kind, &a.hash));
                removed.push(a.id());
            }
        }
        for t in fs::read_dir(self.root.join("tmp")).into_iter().flatten().flatten() {
            remove_tree(&t.path())?;
            removed.push(format!("tmp/{}", t.file_name().to_string_lossy()));
        }
        Ok(removed)
    }
}

/// Writes a file atomically (see hearth-fs).
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), ImageError> {
    hearth_fs::write_atomic(path, data).map_err(|e| ImageError::io("writing cache metadata", e))
}

/// Removes a directory tree, first detaching anything mounted under it (a failed rootfs
/// build could leave /proc or /dev mounted in its chroot; deleting through such a mount
/// would delete the host's files).
pub fn remove_tree(path: &Path) -> Result<(), ImageError> {
    if !path.exists() {
        return Ok(());
    }
    let canonical = path.canonicalize().map_err(|e| ImageError::io(format!("resolving {}", path.display()), e))?;
    let mounts = mounts_under(&canonical);
    for m in mounts.iter().rev() {
        let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
    if !mounts_under(&canonical).is_empty() {
        return Err(ImageError::Corrupt(format!("{} still has mounts under it; not deleting", canonical.display())));
    }
    fs::remove_dir_all(&canonical).map_err(|e| ImageError::io(format!("removing {}", canonical.display()), e))
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .map(|m| m.replace("\\040", " "))
        .filter(|m| m == &prefix || m.starts_with(&format!("{prefix}/")))
        .collect()
}

/// (apparent, allocated) bytes of the files in a directory tree.
pub fn dir_sizes(dir: &Path) -> (u64, u64) {
    let mut sizes = (0, 0);
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(md) = fs::symlink_metadata(e.path()) else { continue };
        if md.is_dir() {
            let (a, d) = dir_sizes(&e.path());
            sizes.0 += a;
            sizes.1 += d;
        } else {
            sizes.0 += md.len();
            sizes.1 += md.blocks() * 512;
        }
    }
    sizes
}

pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_then_hit_then_gc() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::new(d.path());
        let _l = cache.lock().unwrap();
        let (a, built) = cache.get_or_build("thing", "abc", vec!["x".into()], |out, _log| fs::write(out.join("f"), b"12345").map_err(|e| ImageError::io("w", e))).unwrap();
        assert!(built);
        assert_eq!(fs::read(a.file("f")).unwrap(), b"12345");
        assert!(a.apparent_bytes >= 5);
        let (again, built) = cache.get_or_build("thing", "abc", vec![], |_, _| panic!("must not rebuild")).unwrap();
        assert!(!built);
        assert_eq!(again.dir, a.dir);
        cache.set_ref("thing", &a).unwrap();
        assert_eq!(cache.resolve("thing").unwrap().hash, "abc");
        cache.get_or_build("thing", "old", vec![], |_, _| Ok(())).unwrap();
        assert_eq!(cache.list().len(), 2);
        assert_eq!(cache.gc().unwrap(), vec!["thing/old".to_string()]);
        assert_eq!(cache.list().len(), 1);
    }

    #[test]
    fn a_failed_build_leaves_no_artifact_and_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::new(d.path());
        let err = cache.get_or_build("thing", "bad", vec![], |out, _| {
            fs::write(out.join("half"), b"x").unwrap();
            Err(ImageError::Corrupt("boom".into()))
        });
        assert!(err.is_err());
        assert!(cache.get("thing", "bad").is_none());
        assert!(!d.path().join("thing/bad").exists());
        assert_eq!(fs::read_dir(d.path().join("tmp")).unwrap().count(), 0);
    }
}
