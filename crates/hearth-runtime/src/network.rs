//! A workstation's network as the runtime needs it: plain data the server hands over (this
//! crate does not make networks; the server does, with hearth-net), persisted in the
//! workstation's directory (`network.json`) so every start uses the same tap, address and
//! limits, whoever starts it. Turned into hearth-vmm's `NetConfig` at launch.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use hearth_vmm::models::{RateLimiter, TokenBucket};
use hearth_vmm::vm::NetConfig;
use serde::{Deserialize, Serialize};

/// `network.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetSpec {
    /// The named network namespace file Firecracker is started in (it holds the tap).
    pub netns: PathBuf,
    pub tap: String,
    pub mac: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub mtu: u16,
    pub dns: Vec<Ipv4Addr>,
    /// Into the guest, Mbit/s; 0: unlimited.
    pub rx_mbps: u32,
    /// Out of the guest, Mbit/s; 0: unlimited.
    pub tx_mbps: u32,
}

/// Bytes per second in one Mbit/s.
const BYTES_PER_MBIT: u64 = 125_000;
/// How often the bucket refills: a tenth of a second's worth at a time.
const REFILL_MS: u64 = 100;
/// The smallest bucket: one whole virtio-net frame with TSO/GSO (64 KiB + headers) must fit,
/// or a low limit would stall on every large frame.
const MIN_BUCKET: u64 = 80 << 10;

/// Firecracker's limiter for `mbps` (0: none).
///
/// Firecracker refills `size` tokens every `refill_time` ms and starts with a full bucket,
/// so the bucket is also the burst. A bucket of a whole second (refill 1000 ms) would let
/// the first second of any transfer through at line rate: a 20 MB download at 40 Mbit/s
/// would then finish a second early and measure 1.33x its limit. A tenth of a second's
/// worth (refilled every 100 ms, the same rate) keeps the burst to 100 ms, so what a user
/// measures is what was configured; no `one_time_burst` for the same reason. At low rates
/// the bucket stays at least one frame and the refill period grows to keep the rate.
pub fn rate_limiter(mbps: u32) -> Option<RateLimiter> {
    if mbps == 0 {
        return None;
    }
    let per_sec = u64::from(mbps) * BYTES_PER_MBIT;
    let size = (per_sec * REFILL_MS / 1000).max(MIN_BUCKET);
    let refill_time = (size * 1000).div_ceil(per_sec);
    Some(RateLimiter { bandwidth: Some(TokenBucket { size, refill_time, one_time_burst: None }), ops: None })
}

impl NetSpec {
    pub(crate) fn vm_config(&self) -> NetConfig {
        NetConfig {
            netns: Some(self.netns.clone()),
            tap: self.tap.clone(),
            guest_mac: Some(self.mac.clone()),
            address: self.address,
            prefix: self.prefix,
            gateway: self.gateway,
            mtu: self.mtu,
            dns: self.dns.clone(),
            rx: rate_limiter(self.rx_mbps),
            tx: rate_limiter(self.tx_mbps),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(l: RateLimiter) -> f64 {
        let b = l.bandwidth.unwrap();
        b.size as f64 * 1000.0 / b.refill_time as f64
    }

    #[test]
    fn limiters_keep_the_rate_with_a_short_burst() {
        assert_eq!(rate_limiter(0), None);
        let l = rate_limiter(40).unwrap();
        assert_eq!(l.bandwidth, Some(TokenBucket { size: 500_000, refill_time: 100, one_time_burst: None }));
        for mbps in [1, 3, 40, 999, 10_000] {
            let want = f64::from(mbps) * 125_000.0;
            let got = rate(rate_limiter(mbps).unwrap());
            // Rounding the refill period up only ever slows it, by less than 1 ms a period.
            assert!(got <= want && got > want * 0.99, "{mbps} Mbit/s: {got} B/s");
            assert!(rate_limiter(mbps).unwrap().bandwidth.unwrap().size >= MIN_BUCKET);
        }
    }

    #[test]
    fn a_spec_becomes_the_vm_network() {
        let s = NetSpec {
            netns: "/run/netns/hearth-w000000000001".into(),
            tap: "tap0".into(),
            mac: "02:68:00:00:00:01".into(),
            address: [10, 200, 0, 10].into(),
            prefix: 30,
            gateway: [10, 200, 0, 9].into(),
            mtu: 1500,
            dns: vec![[203, 0, 113, 53].into()],
            rx_mbps: 40,
            tx_mbps: 0,
        };
        let n = s.vm_config();
        assert_eq!((n.netns.as_deref(), n.guest_mac.as_deref(), n.tx), (Some(s.netns.as_path()), Some("02:68:00:00:00:01"), None));
        assert_eq!(n.rx, rate_limiter(40));
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<NetSpec>(&json).unwrap(), s);
    }
}
