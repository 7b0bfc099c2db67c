//! Failed sign-ins counted per account and per address in fixed 15-minute windows: past the
//! limit, sign-ins for that account (or from that address) are refused until the window ends,
//! whether the password is right or not, so guessing stays slow. Memory is bounded: at most
//! [`MAX_KEYS`] keys, the stalest dropped first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Keys remembered at once (accounts and addresses together).
pub const MAX_KEYS: usize = 10_000;

pub struct Limiter {
    per_account: u32,
    per_address: u32,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

/// The key of an address: IPv6 by its /64, what one client can usually choose from.
fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("a:{v4}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("a:{v4}"),
            None => {
                let s = v6.segments();
                format!("a:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

impl Limiter {
    pub fn new(per_account: u32, per_address: u32) -> Limiter {
        Limiter { per_account, per_address, windows: Mutex::default() }
    }

    fn keys(account: &str, from: Option<IpAddr>) -> Vec<(String, bool)> {
        let mut keys = vec![(format!("u:{account}"), true)];
        keys.extend(from.map(|ip| (address_key(ip), false)));
        keys
    }

    /// Seconds until a sign-in for `account` from `from` may be tried again; none: now.
    pub fn blocked(&self, account: &str, from: Option<IpAddr>, now: Instant) -> Option<u64> {
        let windows = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Self::keys(account, from)
            .into_iter()
            .filter_map(|(key, is_account)| {
                let (start, n) = *windows.get(&key)?;
                let limit = if is_account { self.per_account } else { self.per_address };
                let left = WINDOW.checked_sub(now.duration_since(start)).filter(|d| !d.is_zero())?;
                (n >= limit).then(|| left.as_secs().max(1))
            })
            .max()
    }

    /// Counts a failed sign-in.
    pub fn failed(&self, account: &str, from: Option<IpAddr>, now: Instant) {
        let mut windows = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if windows.len() >= MAX_KEYS {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
            while windows.len() >= MAX_KEYS {
                let Some(stalest) = windows.iter().min_by_key(|(_, (start, _))| *start).map(|(k, _)| k.clone()) else { break };
                windows.remove(&stalest);
            }
        }
        for (key, _) in Self::keys(account, from) {
            let w = windows.entry(key).or_insert((now, 0));
            if now.duration_since(w.0) >= WINDOW {
                *w = (now, 0);
            }
            w.1 = w.1.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_and_addresses_are_limited_for_their_window() {
        let l = Limiter::new(3, 5);
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(l.blocked("ann", Some(ip), t0), None);
            l.failed("ann", Some(ip), t0);
        }
        assert!(l.blocked("ann", Some(ip), t0).is_some_and(|s| s > 0 && s <= WINDOW.as_secs()));
        assert!(l.blocked("ann", None, t0).is_some(), "the account, from anywhere");
        assert_eq!(l.blocked("bob", Some(ip), t0), None, "another account from the same address");
        l.failed("bob", Some(ip), t0);
        l.failed("cy", Some(ip), t0);
        assert!(l.blocked("dee", Some(ip), t0).is_some(), "the address, for any account");
        assert_eq!(l.blocked("dee", Some("192.0.2.2".parse().unwrap()), t0), None);
        assert_eq!(l.blocked("ann", Some(ip), t0 + WINDOW), None, "the window ends");
        // An IPv6 client is one key per /64.
        let (a, b): (IpAddr, IpAddr) = ("2001:db8::1".parse().unwrap(), "2001:db8::ffff".parse().unwrap());
        assert_eq!(address_key(a), address_key(b));
    }

    #[test]
    fn memory_is_bounded() {
        let l = Limiter::new(1, 1);
        let t0 = Instant::now();
        for i in 0..MAX_KEYS + 10 {
            l.failed(&format!("u{i}"), None, t0 + Duration::from_millis(i as u64));
        }
        assert!(l.windows.lock().unwrap().len() <= MAX_KEYS);
        assert!(l.blocked(&format!("u{}", MAX_KEYS + 9), None, t0 + Duration::from_secs(20)).is_some(), "the newest is kept");
    }
}
