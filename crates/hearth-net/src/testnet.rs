//! A fake "internet" for tests: a named netns linked to the root namespace by a veth that
//! plays hearth's uplink. This crate's tests use it, and so can hearth's end-to-end tests
//! in the box (whose real network must never see test traffic).

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;

use crate::{netns as ns, nl, NetError};

/// The internet side of the uplink veth.
pub const INTERNET_IF: &str = "eth0";

#[derive(Debug)]
pub struct Internet {
    path: PathBuf,
    /// The root-side end of the veth: hearth's uplink.
    pub uplink: String,
    /// The address on the uplink (the root namespace's, i.e. the host's).
    pub host_addr: Ipv4Net,
    /// The internet side's address; the root namespace's default route points at it.
    pub addr: Ipv4Net,
}

impl Internet {
    /// Makes netns `path` with `eth0` = `addr`, linked to the calling thread's namespace by
    /// veth `uplink` = `host_addr`, plus a default route there via `addr`.
    pub fn create(path: &Path, uplink: &str, host_addr: Ipv4Net, addr: Ipv4Net) -> Result<Internet, NetError> {
        let root = ns::current()?;
        let inet = ns::create(path)?;
        let me = Internet { path: path.to_path_buf(), uplink: uplink.to_string(), host_addr, addr };
        if let Err(e) = me.link(&root, &inet) {
            let _ = me.remove();
            return Err(e);
        }
        Ok(me)
    }

    fn link(&self, root: &File, inet: &File) -> Result<(), NetError> {
        let (uplink, host, far) = (self.uplink.as_str(), self.host_addr, self.addr);
        let inet_fd = inet.as_fd();
        nl::run(root.as_fd(), |h| async move {
            nl::add_veth(&h, uplink, INTERNET_IF, inet_fd).await?;
            let i = nl::up(&h, uplink).await?;
            nl::add_addr(&h, i, host.addr(), host.prefix_len()).await?;
            nl::add_route(&h, Ipv4Net::default(), far.addr(), i).await
        })?;
        nl::run(inet.as_fd(), |h| async move {
            nl::up(&h, "lo").await?;
            let i = nl::up(&h, INTERNET_IF).await?;
            nl::add_addr(&h, i, far.addr(), far.prefix_len()).await
        })
    }

    /// Adds addresses on the internet side's loopback: more "hosts" out there (in private
    /// space too, to stand for a LAN resolver or an allow-listed service).
    pub fn add_addresses(&self, addrs: &[Ipv4Net]) -> Result<(), NetError> {
        let inet = ns::open(&self.path)?;
        let addrs = addrs.to_vec();
        nl::run(inet.as_fd(), |h| async move {
            let lo = nl::up(&h, "lo").await?;
            for a in addrs {
                nl::add_addr(&h, lo, a.addr(), a.prefix_len()).await?;
            }
            Ok(())
        })
    }

    /// The netns file, for [`ns::open`] and [`ns::run_in`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Deletes the netns; the veth goes with it.
    pub fn remove(&self) -> Result<(), NetError> {
        ns::delete(&self.path)
    }
}
