//! What the service needs of the host's workstations: their VMs (hearth-runtime) and the
//! base images they boot from (the artifact cache), behind one trait, so that every
//! operation, its policy and its errors are tested without Firecracker (a fake backend in
//! `crate::testing` runs a real agent on the host over unix sockets).
//!
//! Must not: decide anything (ownership, budgets, records are the service's); keep state
//! of its own beyond what the runtime keeps in workstation directories.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use hearth_exec::ExecClient;
use hearth_image::{refs, Cache};
use hearth_runtime::{Hibernation, NetSpec, Runtime, RuntimeError, Spec, State, Wake};
use hearth_vmm::vm::StopKind;

/// A workstation's state as its VM has it, with why it crashed when it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmState {
    pub state: State,
    pub crash: Option<String>,
}

pub trait Backend: Send + Sync + 'static {
    /// The base image of a recipe, if one was built.
    fn base_image(&self, recipe: &str) -> Option<PathBuf>;
    /// Makes a stopped workstation (its directory and own disk).
    fn create(&self, id: &str, spec: Spec) -> Result<(), RuntimeError>;
    /// Kills it if it runs and removes all it owns; `NotFound` when it is gone already.
    fn delete(&self, id: &str) -> Result<(), RuntimeError>;
    /// Every workstation it holds.
    fn ids(&self) -> Result<Vec<String>, RuntimeError>;
    /// Its state now (a VM found dead becomes crashed).
    fn state(&self, id: &str) -> Result<VmState, RuntimeError>;
    /// Boots it; returns once its agent is ready, with how long that took after InstanceStart (ms).
    fn start(&self, id: &str) -> Result<f64, RuntimeError>;
    fn stop(&self, id: &str) -> Result<StopKind, RuntimeError>;
    fn pause(&self, id: &str) -> Result<(), RuntimeError>;
    fn resume(&self, id: &str) -> Result<(), RuntimeError>;
    /// Saves its whole VM to disk and ends it (hearth_runtime::hibernate).
    fn hibernate(&self, id: &str) -> Result<Hibernation, RuntimeError>;
    /// Brings a hibernated one back (or cold-boots it when its snapshot does not load).
    fn wake(&self, id: &str) -> Result<Wake, RuntimeError>;
    /// The uid its jailed VMM runs as (its tap must belong to it); none unjailed.
    fn jail_uid(&self, id: &str) -> Result<Option<u32>, RuntimeError>;
    /// Its network from its next start on.
    fn set_network(&self, id: &str, net: Option<&NetSpec>) -> Result<(), RuntimeError>;
    /// Where its serial console is logged.
    fn console_log(&self, id: &str) -> Result<PathBuf, RuntimeError>;
    /// A control connection to its agent; a conflict when it does not run.
    fn agent(&self, id: &str, timeout: Duration) -> Result<ExecClient<UnixStream>, RuntimeError>;
    /// A descriptor that becomes readable when its VM exits (a pidfd); none when it does not
    /// run or cannot be watched.
    fn exit_fd(&self, id: &str) -> Option<std::io::Result<OwnedFd>>;
    /// The CPU time its VMM has used (all its threads); none when it does not run.
    fn cpu_time(&self, id: &str) -> Option<Duration>;
    /// The host memory its VMM holds (RSS); none when it does not run.
    fn rss_bytes(&self, id: &str) -> Option<u64>;
}

/// A backend shared (a test keeps a handle on the one its service uses).
impl<B: Backend + ?Sized> Backend for std::sync::Arc<B> {
    fn base_image(&self, recipe: &str) -> Option<PathBuf> {
        (**self).base_image(recipe)
    }
    fn create(&self, id: &str, spec: Spec) -> Result<(), RuntimeError> {
        (**self).create(id, spec)
    }
    fn delete(&self, id: &str) -> Result<(), RuntimeError> {
        (**self).delete(id)
    }
    fn ids(&self) -> Result<Vec<String>, RuntimeError> {
        (**self).ids()
    }
    fn state(&self, id: &str) -> Result<VmState, RuntimeError> {
        (**self).state(id)
    }
    fn start(&self, id: &str) -> Result<f64, RuntimeError> {
        (**self).start(id)
    }
    fn stop(&self, id: &str) -> Result<StopKind, RuntimeError> {
        (**self).stop(id)
    }
    fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        (**self).pause(id)
    }
    fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        (**self).resume(id)
    }
    fn hibernate(&self, id: &str) -> Result<Hibernation, RuntimeError> {
        (**self).hibernate(id)
    }
    fn wake(&self, id: &str) -> Result<Wake, RuntimeError> {
        (**self).wake(id)
    }
    fn jail_uid(&self, id: &str) -> Result<Option<u32>, RuntimeError> {
        (**self).jail_uid(id)
    }
    fn set_network(&self, id: &str, net: Option<&NetSpec>) -> Result<(), RuntimeError> {
        (**self).set_network(id, net)
    }
    fn console_log(&self, id: &str) -> Result<PathBuf, RuntimeError> {
        (**self).console_log(id)
    }
    fn agent(&self, id: &str, timeout: Duration) -> Result<ExecClient<UnixStream>, RuntimeError> {
        (**self).agent(id, timeout)
    }
    fn exit_fd(&self, id: &str) -> Option<std::io::Result<OwnedFd>> {
        (**self).exit_fd(id)
    }
    fn cpu_time(&self, id: &str) -> Option<Duration> {
        (**self).cpu_time(id)
    }
    fn rss_bytes(&self, id: &str) -> Option<u64> {
        (**self).rss_bytes(id)
    }
}

/// The real thing: Firecracker workstations, images from the artifact cache.
pub struct Host {
    pub runtime: Runtime,
    pub cache: Cache,
}

impl Backend for Host {
    fn base_image(&self, recipe: &str) -> Option<PathBuf> {
        self.cache.resolve_file(&refs::rootfs(recipe), "rootfs.ext4").ok()
    }

    fn create(&self, id: &str, spec: Spec) -> Result<(), RuntimeError> {
        self.runtime.create(id, spec).map(drop)
    }

    fn delete(&self, id: &str) -> Result<(), RuntimeError> {
        self.runtime.get(id)?.delete()
    }

    fn ids(&self) -> Result<Vec<String>, RuntimeError> {
        self.runtime.ids()
    }

    fn state(&self, id: &str) -> Result<VmState, RuntimeError> {
        let st = self.runtime.get(id)?.status()?;
        Ok(VmState { state: st.record.state, crash: st.record.crash })
    }

    fn start(&self, id: &str) -> Result<f64, RuntimeError> {
        Ok(self.runtime.get(id)?.start()?.instance_start_to_ready_ms)
    }

    fn stop(&self, id: &str) -> Result<StopKind, RuntimeError> {
        self.runtime.get(id)?.stop()
    }

    fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        self.runtime.get(id)?.pause()
    }

    fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        self.runtime.get(id)?.resume()
    }

    fn hibernate(&self, id: &str) -> Result<Hibernation, RuntimeError> {
        self.runtime.get(id)?.hibernate()
    }

    fn wake(&self, id: &str) -> Result<Wake, RuntimeError> {
        self.runtime.get(id)?.wake()
    }

    fn jail_uid(&self, id: &str) -> Result<Option<u32>, RuntimeError> {
        self.runtime.get(id)?.jail_uid()
    }

    fn set_network(&self, id: &str, net: Option<&NetSpec>) -> Result<(), RuntimeError> {
        self.runtime.get(id)?.set_network(net)
    }

    fn console_log(&self, id: &str) -> Result<PathBuf, RuntimeError> {
        Ok(self.runtime.get(id)?.console_log())
    }

    fn agent(&self, id: &str, timeout: Duration) -> Result<ExecClient<UnixStream>, RuntimeError> {
        self.runtime.get(id)?.agent(timeout)
    }

    fn exit_fd(&self, id: &str) -> Option<std::io::Result<OwnedFd>> {
        Some(self.runtime.get(id).ok()?.vm()?.exit_fd())
    }

    fn cpu_time(&self, id: &str) -> Option<Duration> {
        hearth_init::proc::cpu_time(self.runtime.get(id).ok()?.vm()?.pid())
    }

    fn rss_bytes(&self, id: &str) -> Option<u64> {
        hearth_init::proc::rss_bytes(self.runtime.get(id).ok()?.vm()?.pid())
    }
}
