//! Request bodies of Firecracker's API (v1.12, `src/firecracker/swagger/firecracker.yaml`).
//! Optional keys are left out when unset: Firecracker rejects keys it does not know.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct BootSource {
    pub kernel_image_path: String,
    pub boot_args: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initrd_path: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Drive {
    pub drive_id: String,
    pub path_on_host: String,
    pub is_root_device: bool,
    pub is_read_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limiter: Option<RateLimiter>,
}

/// A token bucket: `size` tokens (bytes or operations), refilled every `refill_time` ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TokenBucket {
    pub size: u64,
    pub refill_time: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub one_time_burst: Option<u64>,
}

impl TokenBucket {
    /// A bucket that lets `per_sec` through each second, in 100 ms refills (smooth, not bursty).
    pub fn per_second(per_sec: u64) -> Self {
        Self { size: (per_sec / 10).max(1), refill_time: 100, one_time_burst: None }
    }
}

/// Firecracker's rate limiter for a drive, a network interface or the entropy device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RateLimiter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<TokenBucket>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ops: Option<TokenBucket>,
}

/// A virtio-net device backed by a tap on the host.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkInterface {
    pub iface_id: String,
    pub host_dev_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest_mac: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rx_rate_limiter: Option<RateLimiter>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_rate_limiter: Option<RateLimiter>,
}

/// The virtio-rng device: the guest's entropy from the host's.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Entropy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limiter: Option<RateLimiter>,
}

/// The memory balloon: inflated, it hands guest memory back to the host.
#[derive(Debug, Clone, Serialize)]
pub struct Balloon {
    pub amount_mib: u32,
    /// The guest may take memory back from the balloon rather than OOM-kill.
    pub deflate_on_oom: bool,
    /// How often the guest reports memory statistics (0: never).
    pub stats_polling_interval_s: u32,
}

/// Firecracker's own log (its errors and warnings; the guest's serial output is elsewhere).
#[derive(Debug, Clone, Serialize)]
pub struct Logger {
    pub log_path: String,
    pub level: String,
    pub show_level: bool,
    pub show_log_origin: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct MachineConfig {
    pub vcpu_count: u8,
    pub mem_size_mib: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smt: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Vsock {
    pub guest_cid: u32,
    pub uds_path: String,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub enum ActionType {
    InstanceStart,
    SendCtrlAltDel,
    FlushMetrics,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstanceAction {
    pub action_type: ActionType,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_exactly_the_documented_keys() {
        let m = MachineConfig { vcpu_count: 2, mem_size_mib: 256, smt: None };
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"vcpu_count":2,"mem_size_mib":256}"#);
        let a = InstanceAction { action_type: ActionType::InstanceStart };
        assert_eq!(serde_json::to_string(&a).unwrap(), r#"{"action_type":"InstanceStart"}"#);
        let b = BootSource { kernel_image_path: "/k".into(), boot_args: "x".into(), initrd_path: None };
        assert_eq!(serde_json::to_string(&b).unwrap(), r#"{"kernel_image_path":"/k","boot_args":"x"}"#);
        let d = Drive {
            drive_id: "o".into(),
            path_on_host: "/d".into(),
            is_root_device: false,
            is_read_only: false,
            rate_limiter: Some(RateLimiter { bandwidth: Some(TokenBucket::per_second(10_000_000)), ops: None }),
        };
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"{"drive_id":"o","path_on_host":"/d","is_root_device":false,"is_read_only":false,"rate_limiter":{"bandwidth":{"size":1000000,"refill_time":100}}}"#
        );
        assert_eq!(serde_json::to_string(&Entropy::default()).unwrap(), "{}");
    }
}
