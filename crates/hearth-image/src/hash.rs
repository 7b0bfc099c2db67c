//! Input hashing: an artifact's key is the hash of everything that went into it.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::ImageError;

/// Accumulates labelled inputs; `finish` gives the cache key and a readable summary.
pub struct InputHash {
    hasher: Sha256,
    summary: Vec<String>,
}

impl InputHash {
    /// `kind` and `builder_version` are always part of the key: bump the version when a
    /// build procedure changes so old artifacts stop matching.
    pub fn new(kind: &str, builder_version: u32) -> Self {
        let mut h = Self { hasher: Sha256::new(), summary: Vec::new() };
        h.text("kind", kind);
        h.text("builder", &builder_version.to_string());
        h
    }

    pub fn text(&mut self, label: &str, value: &str) {
        self.feed(label, value.as_bytes());
        self.summary.push(format!("{label}={value}"));
    }

    pub fn bytes(&mut self, label: &str, data: &[u8]) {
        self.feed(label, data);
        self.summary.push(format!("{label}=sha256:{}", &sha256_hex(data)[..16]));
    }

    pub fn file(&mut self, label: &str, path: &Path) -> Result<(), ImageError> {
        let digest = sha256_file(path)?;
        self.feed(label, digest.as_bytes());
        self.summary.push(format!("{label}={} (sha256:{})", path.display(), &digest[..16]));
        Ok(())
    }

    fn feed(&mut self, label: &str, data: &[u8]) {
        // Length-prefix both parts so ("ab","c") and ("a","bc") differ.
        for part in [label.as_bytes(), data] {
            self.hasher.update((part.len() as u64).to_le_bytes());
            self.hasher.update(part);
        }
    }

    /// The key (16 hex digits, 64 bits: plenty for one cache) and the summary.
    pub fn finish(self) -> (String, Vec<String>) {
        (hex::encode(self.hasher.finalize())[..16].to_string(), self.summary)
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub fn sha256_file(path: &Path) -> Result<String, ImageError> {
    let mut f = std::fs::File::open(path).map_err(|e| ImageError::io(format!("reading {}", path.display()), e))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| ImageError::io(format!("reading {}", path.display()), e))?;
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_every_input_and_its_boundaries() {
        let key = |parts: &[(&str, &str)]| {
            let mut h = InputHash::new("k", 1);
            for (l, v) in parts {
                h.text(l, v);
            }
            h.finish().0
        };
        assert_eq!(key(&[("a", "b")]), key(&[("a", "b")]));
        assert_ne!(key(&[("a", "b")]), key(&[("a", "c")]));
        assert_ne!(key(&[("ab", "c")]), key(&[("a", "bc")]));
        assert_ne!(InputHash::new("k", 1).finish().0, InputHash::new("k", 2).finish().0);
        assert_eq!(key(&[]).len(), 16);
    }
}
