//! The `inet hearth` table, built as typed nftables JSON (no rule text is formatted).
//! docs/network.md says why each rule exists; the comments here say what it matches.

use std::borrow::Cow;
use std::collections::HashSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use nftables::expr::{Expression as E, Fib, FibFlag, FibResult, Meta, MetaKey, NamedExpression as N, Payload, PayloadField, Prefix, SetItem, CT};
use nftables::schema::{Chain, NfListObject, Rule, Set, SetFlag, SetType, SetTypeValue, Table};
use nftables::stmt::{AnonymousCounter, Counter, Match, Operator, Statement as S};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use crate::alloc::{Range, HOST_VETH_PREFIX};

pub(crate) const TABLE: &str = "hearth";
pub(crate) const NAT_SET: &str = "nat_ifaces";
const FAMILY: NfFamily = NfFamily::INet;
/// Never forwarded to (unless DNS or allowed): private, CGNAT, loopback, link-local (the
/// cloud metadata address 169.254.169.254), multicast, "this network" and reserved.
pub(crate) const BLOCKED: [&str; 9] =
    ["0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16", "224.0.0.0/4", "240.0.0.0/4"];

/// What the host's rules are made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostOpts {
    /// The interface NAT egress leaves by.
    pub uplink: String,
    /// Resolvers workstations may query on port 53 (even at private addresses, or the host).
    pub dns: Vec<Ipv4Addr>,
    /// Destinations opened on top (a port opens TCP and UDP to it; none: every port).
    pub allow: Vec<Allow>,
    /// Also set net.ipv4.ip_forward=1 in the root namespace (off: the host admin's call).
    pub forward: bool,
}

/// One allow-list entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allow {
    pub net: Ipv4Net,
    pub port: Option<u16>,
}

fn meta(key: MetaKey) -> E<'static> {
    E::Named(N::Meta(Meta { key }))
}
fn field(protocol: &'static str, field: &'static str) -> E<'static> {
    E::Named(N::Payload(Payload::PayloadField(PayloadField { protocol: protocol.into(), field: field.into() })))
}
fn is(left: E<'static>, op: Operator, right: E<'static>) -> S<'static> {
    S::Match(Match { left, right, op })
}
fn s(v: impl Into<String>) -> E<'static> {
    E::String(Cow::Owned(v.into()))
}
fn prefix(net: Ipv4Net) -> E<'static> {
    E::Named(N::Prefix(Prefix { addr: Box::new(s(net.network().to_string())), len: u32::from(net.prefix_len()) }))
}
fn from_ws() -> S<'static> {
    is(meta(MetaKey::Iifname), Operator::EQ, s(format!("{HOST_VETH_PREFIX}*")))
}
fn to_ws() -> S<'static> {
    is(meta(MetaKey::Oifname), Operator::EQ, s(format!("{HOST_VETH_PREFIX}*")))
}
fn ct_state(states: &[&'static str]) -> S<'static> {
    let right = E::List(states.iter().map(|&v| s(v)).collect());
    is(E::Named(N::CT(CT { key: "state".into(), family: None, dir: None })), Operator::IN, right)
}
/// TCP or UDP to `port`.
fn port(port: u16) -> Vec<S<'static>> {
    let l4 = E::Named(N::Set(vec![SetItem::Element(s("tcp")), SetItem::Element(s("udp"))]));
    vec![is(meta(MetaKey::L4proto), Operator::IN, l4), is(field("th", "dport"), Operator::EQ, E::Number(port.into()))]
}
fn counted_drop() -> [S<'static>; 2] {
    [S::Counter(Counter::Anonymous(Some(AnonymousCounter::default()))), S::Drop(None)]
}

fn rule(chain: &'static str, expr: Vec<S<'static>>) -> NfListObject<'static> {
    NfListObject::Rule(Rule { family: FAMILY, table: TABLE.into(), chain: chain.into(), expr: expr.into(), handle: None, index: None, comment: None })
}
fn chain(name: &'static str, kind: NfChainType, hook: NfHook, prio: i32) -> NfListObject<'static> {
    NfListObject::Chain(Chain {
        family: FAMILY,
        table: TABLE.into(),
        name: name.into(),
        _type: Some(kind),
        hook: Some(hook),
        prio: Some(prio),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    })
}
fn set(name: &'static str, ty: SetType, interval: bool, elem: Vec<E<'static>>) -> NfListObject<'static> {
    NfListObject::Set(Box::new(Set {
        family: FAMILY,
        table: TABLE.into(),
        name: name.into(),
        set_type: SetTypeValue::Single(ty),
        flags: interval.then(|| HashSet::from([SetFlag::Interval])),
        elem: (!elem.is_empty()).then(|| elem.into()),
        ..Set::default()
    }))
}
pub(crate) fn table() -> NfListObject<'static> {
    NfListObject::Table(Table { family: FAMILY, name: TABLE.into(), handle: None })
}
/// An element change of the nat set (`add element` / `delete element`).
pub(crate) fn nat_element(ifname: &str) -> NfListObject<'static> {
    NfListObject::Element(nftables::schema::Element { family: FAMILY, table: TABLE.into(), name: NAT_SET.into(), elem: vec![s(ifname)].into() })
}

/// Rules accepting what a workstation may reach on top of NAT egress: DNS and the allow list.
fn openings(chain: &'static str, opts: &HostOpts) -> Vec<NfListObject<'static>> {
    let mut v = vec![rule(chain, [vec![from_ws(), is(field("ip", "daddr"), Operator::EQ, s("@dns"))], port(53), vec![S::Accept(None)]].concat())];
    for a in &opts.allow {
        let mut e = vec![from_ws(), is(field("ip", "daddr"), Operator::EQ, prefix(a.net))];
        e.extend(a.port.map(port).unwrap_or_default());
        e.push(S::Accept(None));
        v.push(rule(chain, e));
    }
    v
}

/// The whole table, its nat set holding `nat_ifaces`.
pub(crate) fn objects(range: &Range, opts: &HostOpts, nat_ifaces: &[String]) -> Vec<NfListObject<'static>> {
    let not_nat = |key| is(meta(key), Operator::NEQ, s(format!("@{NAT_SET}")));
    let uplink = s(opts.uplink.clone());
    let mut v = vec![
        table(),
        set(NAT_SET, SetType::Ifname, false, nat_ifaces.iter().map(|n| s(n.clone())).collect()),
        set("dns", SetType::Ipv4Addr, false, opts.dns.iter().map(|a| s(a.to_string())).collect()),
        set("blocked", SetType::Ipv4Addr, true, BLOCKED.iter().filter_map(|b| b.parse().ok()).map(prefix).collect()),
        chain("prerouting", NfChainType::Filter, NfHook::Prerouting, -300),
        // Anti-spoofing: a source address must route back out of the veth it came in by.
        rule(
            "prerouting",
            [
                vec![from_ws(), is(E::Named(N::Fib(Fib { result: FibResult::Oif, flags: HashSet::from([FibFlag::Saddr, FibFlag::Iif]) })), Operator::EQ, E::Boolean(false))],
                counted_drop().to_vec(),
            ]
            .concat(),
        ),
        chain("forward", NfChainType::Filter, NfHook::Forward, 0),
        rule("forward", [vec![from_ws(), not_nat(MetaKey::Iifname)], counted_drop().to_vec()].concat()),
        rule("forward", [vec![to_ws(), not_nat(MetaKey::Oifname)], counted_drop().to_vec()].concat()),
        rule("forward", vec![to_ws(), ct_state(&["established", "related"]), S::Accept(None)]),
        rule("forward", [vec![to_ws()], counted_drop().to_vec()].concat()),
        rule("forward", [vec![from_ws(), is(meta(MetaKey::Oifname), Operator::NEQ, uplink.clone())], counted_drop().to_vec()].concat()),
        rule("forward", [vec![from_ws(), is(meta(MetaKey::Nfproto), Operator::NEQ, s("ipv4"))], counted_drop().to_vec()].concat()),
        rule("forward", vec![from_ws(), ct_state(&["established", "related"]), S::Accept(None)]),
    ];
    v.extend(openings("forward", opts));
    v.push(rule("forward", [vec![from_ws(), is(field("ip", "daddr"), Operator::EQ, s("@blocked"))], counted_drop().to_vec()].concat()));
    v.push(rule("forward", vec![from_ws(), S::Accept(None)]));
    v.push(chain("input", NfChainType::Filter, NfHook::Input, 0));
    v.push(rule("input", [vec![from_ws(), not_nat(MetaKey::Iifname)], counted_drop().to_vec()].concat()));
    v.push(rule("input", vec![from_ws(), ct_state(&["established", "related"]), S::Accept(None)]));
    v.extend(openings("input", opts));
    v.push(rule("input", [vec![from_ws()], counted_drop().to_vec()].concat()));
    v.push(chain("postrouting", NfChainType::NAT, NfHook::Postrouting, 100));
    v.push(rule("postrouting", vec![is(field("ip", "saddr"), Operator::EQ, prefix(range.net())), is(meta(MetaKey::Oifname), Operator::EQ, uplink), S::Masquerade(None)]));
    v
}
