//! What a workstation is made of, and the limits a spec must keep.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::RuntimeError;

/// A workstation's resources and shape, as created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    /// Shown to users; also the guest's hostname once made safe.
    pub name: String,
    pub vcpus: u8,
    pub mem_mib: u32,
    /// Size of its own disk (its writable layer over the shared base image).
    pub disk_gib: u32,
    pub smt: bool,
    /// Writes go to memory and vanish at stop; it has no disk of its own.
    pub read_only: bool,
    /// The shared, read-only base image (a root filesystem from `hearth image build`).
    pub base_image: PathBuf,
}

/// Bounds on what a spec may ask for (the server's config sets them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_vcpus: u8,
    pub min_mem_mib: u32,
    pub max_mem_mib: u32,
    pub max_disk_gib: u32,
}

impl Default for Limits {
    fn default() -> Self {
        // Firecracker allows up to 32 vCPUs; memory below 128 MiB does not run the image.
        Self { max_vcpus: 32, min_mem_mib: 128, max_mem_mib: 64 << 10, max_disk_gib: 1024 }
    }
}

/// Longest name, in characters.
pub const MAX_NAME_LEN: usize = 64;

impl Spec {
    /// Checks every field; the error names the first that is out of bounds.
    pub fn validate(&self, limits: &Limits) -> Result<(), RuntimeError> {
        let invalid = |field, message: String| Err(RuntimeError::Invalid { field, message });
        if self.name.is_empty() || self.name.chars().count() > MAX_NAME_LEN || self.name.chars().any(char::is_control) {
            return invalid("name", format!("must be 1-{MAX_NAME_LEN} characters without control characters"));
        }
        if self.vcpus == 0 || self.vcpus > limits.max_vcpus {
            return invalid("vcpu_count", format!("must be 1-{}", limits.max_vcpus));
        }
        if self.smt && !self.vcpus.is_multiple_of(2) {
            return invalid("smt_enabled", "needs an even vcpu_count".into());
        }
        if self.mem_mib < limits.min_mem_mib || self.mem_mib > limits.max_mem_mib {
            return invalid("mem_size_mib", format!("must be {}-{}", limits.min_mem_mib, limits.max_mem_mib));
        }
        if !self.read_only && (self.disk_gib == 0 || self.disk_gib > limits.max_disk_gib) {
            return invalid("disk_size_gib", format!("must be 1-{}", limits.max_disk_gib));
        }
        Ok(())
    }

    /// The guest's hostname: the name lowercased, anything but `[a-z0-9-]` made `-`.
    pub fn hostname(&self) -> String {
        let h: String = self.name.chars().map(|c| c.to_ascii_lowercase()).map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
        let h = h.trim_matches('-');
        if h.is_empty() {
            "workstation".into()
        } else {
            h.chars().take(63).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec { name: "My Box".into(), vcpus: 2, mem_mib: 512, disk_gib: 2, smt: false, read_only: false, base_image: "/b".into() }
    }

    #[test]
    fn each_bad_field_is_named() {
        let l = Limits::default();
        assert!(spec().validate(&l).is_ok());
        let field = |s: Spec| match s.validate(&l) {
            Err(RuntimeError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(Spec { name: String::new(), ..spec() }), "name");
        assert_eq!(field(Spec { name: "a\nb".into(), ..spec() }), "name");
        assert_eq!(field(Spec { vcpus: 0, ..spec() }), "vcpu_count");
        assert_eq!(field(Spec { vcpus: 33, ..spec() }), "vcpu_count");
        assert_eq!(field(Spec { vcpus: 3, smt: true, ..spec() }), "smt_enabled");
        assert_eq!(field(Spec { mem_mib: 64, ..spec() }), "mem_size_mib");
        assert_eq!(field(Spec { mem_mib: u32::MAX, ..spec() }), "mem_size_mib");
        assert_eq!(field(Spec { disk_gib: 0, ..spec() }), "disk_size_gib");
        assert!(Spec { disk_gib: 0, read_only: true, ..spec() }.validate(&l).is_ok());
    }

    #[test]
    fn hostnames_are_safe() {
        assert_eq!(spec().hostname(), "my-box");
        assert_eq!(Spec { name: "!!!".into(), ..spec() }.hostname(), "workstation");
    }
}
