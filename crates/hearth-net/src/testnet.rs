//! A fake "internet" for tests: a named netns linked to the root namespace by a veth that
//! plays hearth's uplink. This crate's tests use it, and so can hearth's end-to-end tests
//! in the box (whose real network must never see test traffic), with [`http_serve`] as a
//! server out there.

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

/// Largest body [`http_serve`] sends or reads.
pub const MAX_HTTP_TRANSFER: usize = 256 << 20;

/// A small HTTP/1.0 server for the fake internet, one thread per connection, until the
/// listener fails: `GET /ip` answers the peer's address (what NAT made of the source),
/// `GET /bytes/N` N bytes, `POST /sink` the number of body bytes it read. Bind the listener
/// inside the internet's namespace ([`ns::run_in`]); a socket keeps its namespace.
pub fn http_serve(listener: std::net::TcpListener) {
    for conn in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let _ = answer(conn);
        });
    }
}

fn answer(conn: std::net::TcpStream) -> std::io::Result<()> {
    use std::io::{BufRead, Read, Write};
    let peer = conn.peer_addr()?.ip().to_string();
    let mut out = conn.try_clone()?;
    let mut r = std::io::BufReader::new(conn);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut words = line.split_whitespace();
    let body = match (words.next(), words.next()) {
        (Some("GET"), Some("/ip")) => peer.into_bytes(),
        (Some("GET"), Some(p)) if p.starts_with("/bytes/") => vec![b'x'; p[7..].parse::<usize>().unwrap_or(0).min(MAX_HTTP_TRANSFER)],
        (Some("POST"), Some("/sink")) => {
            let n = std::io::copy(&mut r.by_ref().take(len.min(MAX_HTTP_TRANSFER) as u64), &mut std::io::sink())?;
            n.to_string().into_bytes()
        }
        _ => b"?".to_vec(),
    };
    write!(out, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())?;
    out.write_all(&body)
}

/// Python 3 (stdlib only) that times a download of `n` bytes from [`http_serve`] at `url`
/// and an upload of as many, printing `got down_secs sunk up_secs`: the same measurement
/// from a guest and from a plain namespace.
pub fn transfer_script(url: &str, n: usize) -> String {
    format!(
        "import time, urllib.request as u\n\
         t = time.monotonic(); got = 0\n\
         with u.urlopen('{url}/bytes/{n}', timeout=120) as r:\n\
         \x20   while True:\n\
         \x20       b = r.read(1 << 16)\n\
         \x20       if not b: break\n\
         \x20       got += len(b)\n\
         down = time.monotonic() - t\n\
         data = b'y' * {n}; t = time.monotonic()\n\
         sunk = int(u.urlopen(u.Request('{url}/sink', data=data, method='POST'), timeout=120).read())\n\
         up = time.monotonic() - t\n\
         print(got, down, sunk, up)\n"
    )
}

/// Parses [`transfer_script`]'s line into (download, upload) bytes/s, checking that all
/// `n` bytes went each way.
pub fn transfer_rates(line: &str, n: usize) -> Result<(f64, f64), String> {
    let f: Vec<f64> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    match f[..] {
        [got, down, sunk, up] if got as usize == n && sunk as usize == n && down > 0.0 && up > 0.0 => Ok((got / down, sunk / up)),
        _ => Err(format!("unexpected transfer output {line:?} for {n} bytes")),
    }
}
