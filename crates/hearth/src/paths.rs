//! Where hearth keeps its data: one data dir, with the artifact cache inside by default.

use std::path::PathBuf;

#[derive(clap::Args)]
pub(crate) struct PathArgs {
    /// Data directory [default: /var/lib/hearth as root, else ~/.local/share/hearth].
    #[arg(long, global = true, env = "HEARTH_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Artifact cache [default: <data-dir>/cache].
    #[arg(long, global = true, env = "HEARTH_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub(crate) struct Paths {
    pub(crate) data_dir: PathBuf,
    pub(crate) cache_dir: PathBuf,
}

impl PathArgs {
    pub(crate) fn resolve(&self) -> Paths {
        let data_dir = self.data_dir.clone().unwrap_or_else(default_data_dir);
        let cache_dir = self.cache_dir.clone().unwrap_or_else(|| data_dir.join("cache"));
        Paths { data_dir, cache_dir }
    }
}

fn default_data_dir() -> PathBuf {
    if nix_is_root() {
        return PathBuf::from("/var/lib/hearth");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/hearth"),
        None => PathBuf::from("/var/lib/hearth"),
    }
}

fn nix_is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

impl Paths {
    pub(crate) fn cache(&self) -> hearth_image::Cache {
        hearth_image::Cache::new(&self.cache_dir)
    }

    pub(crate) fn box_dir(&self) -> PathBuf {
        self.data_dir.join("box")
    }
}
