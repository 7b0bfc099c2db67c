//! Netlink (rtnetlink) operations, each against one namespace's routing socket.
//!
//! A netlink socket talks to the namespace it was opened in, so [`run`] opens it on a
//! thread that entered the namespace, with a small current-thread tokio runtime: callers
//! stay synchronous, as the rest of hearth is.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, BorrowedFd};

use futures_util::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteHeader};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::error::netlink_errno;
use crate::{netns as ns, NetError};

/// Runs `f` with a netlink handle opened in namespace `netns`.
pub(crate) fn run<T, F, Fut>(netns: BorrowedFd<'_>, f: F) -> Result<T, NetError>
where
    T: Send,
    F: FnOnce(Handle) -> Fut + Send,
    Fut: Future<Output = Result<T, NetError>>,
{
    ns::run_in(netns, || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().map_err(NetError::io("starting a tokio runtime"))?;
        rt.block_on(async {
            let (conn, handle, _) = rtnetlink::new_connection().map_err(NetError::io("opening a netlink socket"))?;
            let conn = tokio::spawn(conn);
            let out = f(handle).await;
            conn.abort();
            out
        })
    })?
}

fn is_errno(e: &rtnetlink::Error, errnos: &[i32]) -> bool {
    netlink_errno(e).is_some_and(|n| errnos.contains(&n))
}

/// The index of link `name`, if it exists.
pub(crate) async fn link_index(h: &Handle, name: &str) -> Result<Option<u32>, NetError> {
    match h.link().get().match_name(name.to_string()).execute().try_next().await {
        Ok(m) => Ok(m.map(|m| m.header.index)),
        Err(e) if is_errno(&e, &[libc::ENODEV]) => Ok(None),
        Err(e) => Err(NetError::netlink(format!("looking up link {name}"))(e)),
    }
}

/// A link this crate just made is gone (someone else deleted it).
pub(crate) fn missing(name: &str) -> NetError {
    NetError::Io { what: format!("link {name}"), source: std::io::ErrorKind::NotFound.into() }
}

/// All links: (index, name).
pub(crate) async fn links(h: &Handle) -> Result<Vec<(u32, String)>, NetError> {
    let msgs: Vec<_> = h.link().get().execute().try_collect().await.map_err(NetError::netlink("listing links"))?;
    let name = |m: &rtnetlink::packet_route::link::LinkMessage| {
        m.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        })
    };
    Ok(msgs.iter().filter_map(|m| Some((m.header.index, name(m)?))).collect())
}

/// A veth pair `host` — `peer`, with `peer` born directly inside namespace `peer_ns` (one
/// message, as `ip link add host type veth peer name peer netns NS`).
pub(crate) async fn add_veth(h: &Handle, host: &str, peer: &str, peer_ns: BorrowedFd<'_>) -> Result<(), NetError> {
    let peer_msg = LinkMessageBuilder::<LinkUnspec>::new().name(peer.to_string()).setns_by_fd(peer_ns.as_raw_fd()).build();
    let msg = LinkVeth::new(host, peer).set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg))).build();
    h.link().add(msg).execute().await.map_err(|e| {
        if is_errno(&e, &[libc::EEXIST]) {
            NetError::Exists { what: format!("link {host}") }
        } else {
            NetError::netlink(format!("creating veth {host}"))(e)
        }
    })
}

/// Brings link `name` up and returns its index.
pub(crate) async fn up(h: &Handle, name: &str) -> Result<u32, NetError> {
    let index = link_index(h, name).await?.ok_or_else(|| missing(name))?;
    let msg = LinkUnspec::new_with_index(index).up().build();
    h.link().set(msg).execute().await.map_err(NetError::netlink(format!("bringing {name} up")))?;
    Ok(index)
}

pub(crate) async fn add_addr(h: &Handle, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<(), NetError> {
    h.address().add(index, IpAddr::V4(addr), prefix).execute().await.map_err(NetError::netlink(format!("adding address {addr}/{prefix}")))
}

/// A route to `dst` via `gateway` out of link `oif` (a default route when `dst` is /0).
pub(crate) async fn add_route(h: &Handle, dst: Ipv4Net, gateway: Ipv4Addr, oif: u32) -> Result<(), NetError> {
    let msg = RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(dst.network(), dst.prefix_len()).gateway(gateway).output_interface(oif).build();
    h.route().add(msg).execute().await.map_err(|e| {
        if is_errno(&e, &[libc::EEXIST]) {
            NetError::Exists { what: format!("route {dst}") }
        } else {
            NetError::netlink(format!("adding route {dst} via {gateway}"))(e)
        }
    })
}

/// Deletes the main-table route to `dst`; none there is fine.
pub(crate) async fn del_route(h: &Handle, dst: Ipv4Net) -> Result<(), NetError> {
    let msg = RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(dst.network(), dst.prefix_len()).build();
    match h.route().del(msg).execute().await {
        Err(e) if !is_errno(&e, &[libc::ESRCH, libc::ENOENT]) => Err(NetError::netlink(format!("deleting route {dst}"))(e)),
        _ => Ok(()),
    }
}

/// Deletes link `name` (a veth takes its peer along); none there is fine.
pub(crate) async fn del_link(h: &Handle, name: &str) -> Result<(), NetError> {
    let Some(index) = link_index(h, name).await? else { return Ok(()) };
    match h.link().del(index).execute().await {
        Err(e) if !is_errno(&e, &[libc::ENODEV]) => Err(NetError::netlink(format!("deleting link {name}"))(e)),
        _ => Ok(()),
    }
}

/// IPv4 routes of the main table: (destination, output link index).
pub(crate) async fn routes(h: &Handle) -> Result<Vec<(Ipv4Net, Option<u32>)>, NetError> {
    let req = RouteMessageBuilder::<Ipv4Addr>::new().build();
    let msgs: Vec<_> = h.route().get(req).execute().try_collect().await.map_err(NetError::netlink("listing routes"))?;
    let mut out = Vec::new();
    for m in msgs.iter().filter(|m| m.header.table == RouteHeader::RT_TABLE_MAIN) {
        let dst = m.attributes.iter().find_map(|a| match a {
            RouteAttribute::Destination(RouteAddress::Inet(d)) => Some(*d),
            _ => None,
        });
        let oif = m.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        });
        if let Ok(net) = Ipv4Net::new(dst.unwrap_or(Ipv4Addr::UNSPECIFIED), m.header.destination_prefix_length) {
            out.push((net, oif));
        }
    }
    Ok(out)
}

/// IPv4 addresses: (link index, address with its prefix).
pub(crate) async fn addrs(h: &Handle) -> Result<Vec<(u32, Ipv4Net)>, NetError> {
    let msgs: Vec<_> = h.address().get().execute().try_collect().await.map_err(NetError::netlink("listing addresses"))?;
    let mut out = Vec::new();
    for m in &msgs {
        for a in &m.attributes {
            if let AddressAttribute::Local(IpAddr::V4(ip)) = a {
                if let Ok(net) = Ipv4Net::new(*ip, m.header.prefix_len) {
                    out.push((m.header.index, net));
                }
            }
        }
    }
    Ok(out)
}
