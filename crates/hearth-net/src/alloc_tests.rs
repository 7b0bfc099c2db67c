use super::*;

fn range(s: &str) -> Range {
    s.parse().unwrap()
}

#[test]
fn default_range_has_8192_slots() {
    let r = Range::default();
    assert_eq!(r.to_string(), DEFAULT_RANGE);
    assert_eq!(r, range(DEFAULT_RANGE));
    assert_eq!(r.slots(), 8192);
}

#[test]
fn slot_addresses() {
    let r = range("10.200.0.0/16");
    let s = r.slot(1).unwrap();
    assert_eq!(s.guest_net().to_string(), "10.200.0.8/30");
    assert_eq!(s.gateway(), Ipv4Addr::new(10, 200, 0, 9));
    assert_eq!(s.guest(), Ipv4Addr::new(10, 200, 0, 10));
    assert_eq!(s.veth_net().to_string(), "10.200.0.12/30");
    assert_eq!(s.veth_host(), Ipv4Addr::new(10, 200, 0, 13));
    assert_eq!(s.veth_ns(), Ipv4Addr::new(10, 200, 0, 14));
    let last = r.slot(8191).unwrap();
    assert_eq!(last.veth_ns(), Ipv4Addr::new(10, 200, 255, 254));
    assert_eq!(r.slot(8192), Err(AllocError::NoSuchSlot { slot: 8192, slots: 8192 }));
    assert!(r.slot(u32::MAX).is_err());
}

#[test]
fn address_to_slot_and_back() {
    let r = range("172.16.4.0/22");
    assert_eq!(r.slots(), 128);
    for i in 0..r.slots() {
        let s = r.slot(i).unwrap();
        for a in [s.guest_net().network(), s.gateway(), s.guest(), s.veth_host(), s.veth_ns(), s.veth_net().broadcast()] {
            assert_eq!(r.slot_of(a), Some(i), "{a}");
        }
    }
    assert_eq!(r.slot_of(Ipv4Addr::new(172, 16, 3, 255)), None);
    assert_eq!(r.slot_of(Ipv4Addr::new(172, 16, 8, 0)), None);
}

#[test]
fn allocation_takes_the_lowest_gap_and_reports_exhaustion() {
    let r = range("192.168.7.0/27");
    assert_eq!(r.slots(), 4);
    let mut used = BTreeSet::new();
    assert_eq!(r.allocate(&used), Ok(0));
    used.extend([0, 1, 3]);
    assert_eq!(r.allocate(&used), Ok(2));
    used.insert(2);
    let err = r.allocate(&used).unwrap_err();
    assert_eq!(err, AllocError::Exhausted { range: r.net(), slots: 4 });
    assert!(err.to_string().contains("exhausted"), "{err}");
    // Records beyond the range (a range made smaller) do not count against it.
    assert_eq!(r.allocate(&BTreeSet::from([7, 100])), Ok(0));
    // A single-slot range.
    let one = range("10.9.9.8/29");
    assert_eq!(one.slots(), 1);
    assert!(matches!(one.allocate(&BTreeSet::from([0])), Err(AllocError::Exhausted { .. })));
}

#[test]
fn bad_ranges_are_typed_errors() {
    let bad = |s: &str| s.parse::<Range>().unwrap_err();
    assert!(matches!(bad("nonsense"), AllocError::Syntax(_)));
    assert!(matches!(bad("10.200.0.0"), AllocError::Syntax(_)));
    assert!(matches!(bad("10.200.0.0/33"), AllocError::Syntax(_)));
    assert!(matches!(bad("10.200.0.5/16"), AllocError::NotAligned(..)));
    assert!(matches!(bad("10.200.0.0/30"), AllocError::TooSmall(_)));
    assert!(matches!(bad("10.200.0.0/32"), AllocError::TooSmall(_)));
    assert!(matches!(bad("8.8.0.0/16"), AllocError::NotPrivate(_)));
    assert!(matches!(bad("0.0.0.0/0"), AllocError::NotPrivate(_)));
    // Straddles the edge of 172.16/12.
    assert!(matches!(bad("172.0.0.0/8"), AllocError::NotPrivate(_)));
    assert!(matches!(bad("100.64.0.0/10"), AllocError::NotPrivate(_)));
    // The largest allowed range.
    assert_eq!(range("10.0.0.0/8").slots(), 1 << 21);
}

#[test]
fn macs_are_unique_local_unicast() {
    let r = range("10.0.0.0/8");
    let a = r.slot(0).unwrap().guest_mac();
    let b = r.slot((1 << 21) - 1).unwrap().guest_mac();
    assert_ne!(a, b);
    for m in [a, b] {
        assert_eq!(m[0] & 0b11, 0b10, "locally administered, unicast");
    }
    assert_eq!(r.slot(5).unwrap().guest_mac_string(), "02:68:00:00:00:05");
}

#[test]
fn ids_and_names() {
    let id = WorkstationId::new("w0123456789ab").unwrap();
    assert_eq!(id.netns(), "hearth-w0123456789ab");
    assert_eq!(id.host_veth(), "hv0123456789ab");
    assert_eq!(id.ns_veth(), "hp0123456789ab");
    for name in [id.host_veth(), id.ns_veth(), TAP.to_string()] {
        assert!(name.len() <= MAX_IFNAME, "{name}");
    }
    for name in [id.netns(), id.host_veth(), id.ns_veth()] {
        assert_eq!(WorkstationId::from_name(&name), Some(id.clone()), "{name}");
    }
    assert_eq!(WorkstationId::from_name("hvfoo"), None);
    assert_eq!(WorkstationId::from_name("eth0"), None);
    for bad in ["", "w", "w0123456789a", "w0123456789abc", "W0123456789ab", "x0123456789ab", "w0123456789AB", "w01234567/9ab", "wéé23456789a"] {
        assert!(matches!(WorkstationId::new(bad), Err(AllocError::BadId(_))), "{bad}");
    }
}
