//! The server's configuration: one TOML file, every key optional, each overridable from the
//! environment (`HEARTH_<KEY>`, sections joined by `__`: `HEARTH_LIMITS__MAX_VCPUS=4`).
//! Every default is documented in docs/config.md.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod auth;
mod hypha;
mod network;
mod quotas;
mod tls;
pub use auth::{email_matches, email_pattern_ok, Auth};
pub use hypha::Hypha;
pub use network::{parse_egress, Network, HOST_CA_DIR, MAX_NET_LIST};
pub use quotas::{Quotas, RoleQuota};
pub use tls::Tls;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the API listens.
    pub listen: SocketAddr,
    /// The server's async worker threads; 0: half the host's CPUs, at least one.
    pub workers: u16,
    pub limits: Limits,
    pub defaults: Defaults,
    /// Run each workstation's Firecracker under the jailer (needs root).
    pub jail: bool,
    /// Workstations' jail uids/gids are allocated from here up.
    pub jail_uid_base: u32,
    /// How long an idle workstation vCPU polls before it halts, microseconds (0: it halts at
    /// once, the default; see [`hearth_vmm::halt_poll_boot_args`]).
    pub guest_halt_poll_us: u32,
    pub network: Network,
    pub auth: Auth,
    pub hypha: Hypha,
    pub quotas: Quotas,
    pub tls: Tls,
    pub idle: Idle,
}

/// When a running workstation nobody uses is hibernated (crate::idle).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Idle {
    /// Seconds without use before it is hibernated (0: never).
    pub hibernate_after_secs: u64,
    /// CPU use (percent of one CPU, between two checks) above which it is in use.
    pub cpu_percent: u32,
}

impl Default for Idle {
    fn default() -> Self {
        Self { hibernate_after_secs: 30 * 60, cpu_percent: 10 }
    }
}

/// Bounds on what a client may ask for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub max_vcpus: u8,
    pub min_mem_mib: u32,
    pub max_mem_mib: u32,
    pub max_disk_gib: u32,
    /// Per direction.
    pub max_bandwidth_mbps: u32,
    pub max_workstations: u32,
    /// Sum of the memory of running workstations: creates and starts beyond it are refused
    /// (0: half of this host's memory).
    pub mem_budget_mib: u64,
    /// Sum of the vCPUs of running workstations (0: four per host core).
    pub vcpu_budget: u64,
    /// Sum of the own disks of all workstations (0: the size of the data directory's filesystem).
    pub disk_budget_gib: u64,
    pub max_exec_timeout_secs: u64,
    pub max_exec_output_bytes: u64,
    pub max_name_len: usize,
    /// Largest request body (file uploads excepted).
    pub max_body_bytes: usize,
    /// Largest file uploaded or downloaded through the API.
    pub max_file_bytes: u64,
    /// Console follows (`/console/stream`) open at once, over all workstations.
    pub max_console_followers: usize,
    /// Live workstation lists (`/workstations/stream`, one per open dashboard) at once.
    pub max_list_followers: usize,
    /// Requests being answered at once, over all clients; beyond it a request is refused
    /// at once (503 `overloaded`) rather than queued. WebSocket terminals and console follows
    /// count only until they are set up.
    pub max_requests_in_flight: usize,
    /// How long a request may take to be answered, seconds (503 `timed_out` after), except
    /// those with bounds of their own: exec (its `timeout_secs`), file transfers (their
    /// size), terminal WebSockets and console follows (streams).
    pub request_timeout_secs: u64,
    /// How long a client may take to send a request's headers, seconds; also how long a
    /// kept-alive connection may wait for its next request before it is closed.
    pub header_read_timeout_secs: u64,
}

/// What a create without a field gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Defaults {
    pub vcpu_count: u8,
    pub mem_size_mib: u32,
    pub disk_size_gib: u32,
    pub recipe: String,
    /// The user commands and terminals run as.
    pub user: String,
    pub exec_timeout_secs: u64,
    /// Bandwidth into a workstation without a `bandwidth` of its own, Mbit/s (0: unlimited).
    pub rx_mbps: u32,
    /// Bandwidth out of it (0: unlimited).
    pub tx_mbps: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            workers: 0,
            limits: Limits::default(),
            defaults: Defaults::default(),
            jail: nix_is_root(),
            jail_uid_base: 900_000,
            guest_halt_poll_us: 0,
            network: Network::default(),
            auth: Auth::default(),
            hypha: Hypha::default(),
            quotas: Quotas::default(),
            idle: Idle::default(),
            tls: Tls::default(),
        }
    }
}

fn nix_is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_vcpus: 8,
            min_mem_mib: 256,
            max_mem_mib: 16 << 10,
            max_disk_gib: 200,
            max_bandwidth_mbps: 10_000,
            max_workstations: 200,
            mem_budget_mib: 0,
            vcpu_budget: 0,
            disk_budget_gib: 0,
            max_exec_timeout_secs: 3600,
            max_exec_output_bytes: 16 << 20,
            max_name_len: 64,
            max_body_bytes: 1 << 20,
            max_file_bytes: 1 << 30,
            max_console_followers: 64,
            max_list_followers: 512,
            max_requests_in_flight: 1024,
            // Above the longest operation's own bounds: a restart's stop (2 x 30 s) and boot (120 s).
            request_timeout_secs: 300,
            header_read_timeout_secs: 30,
        }
    }
}

impl Default for Defaults {
    fn default() -> Self {
        Self { vcpu_count: 2, mem_size_mib: 1024, disk_size_gib: 4, recipe: "datascience".into(), user: "scientist".into(), exec_timeout_secs: 60, rx_mbps: 0, tx_mbps: 0 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Whether session cookies travel over HTTPS only: the server serves it, or users reach
    /// it at an `https` public URL.
    pub fn secure_cookies(&self) -> bool {
        self.tls.enabled() || self.auth.secure_cookies()
    }

    /// How many async worker threads to run: [`Config::workers`], or half the host's CPUs.
    ///
    /// Not all of them by default: the server only bridges bytes, and on a small host the
    /// CPUs are the workstations' (an idle worker looking for work to steal takes CPU from
    /// them). In the box the effect is within its run-to-run spread: terminal throughput
    /// 1.0–1.1 MB/s in three runs with two workers, 1.85 and 1.11 in two with one
    /// (bench/RESULTS.md).
    pub fn worker_threads(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)),
            n => usize::from(n),
        }
    }

    /// How long an idle workstation vCPU polls before it halts.
    ///
    /// Off by default, in the box too: there a 2 ms window makes a wake-up on another vCPU
    /// 20x cheaper, but guests with it reset themselves (triple faults, the emulated nested
    /// SVM's) within seconds in most runs (bench/RESULTS.md).
    pub fn guest_halt_poll(&self) -> Duration {
        Duration::from_micros(self.guest_halt_poll_us.into())
    }

    /// The file (if any), then the environment on top.
    pub fn load(path: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let mut doc: toml::Table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: p.display().to_string(), source })?;
                text.parse().map_err(|e| ConfigError::Invalid(format!("{}: {e}", p.display())))?
            }
            None => toml::Table::new(),
        };
        for (key, value) in env {
            let Some(rest) = key.strip_prefix("HEARTH_") else { continue };
            // Paths, the log filter and the box's own settings are not config keys.
            // (and credentials: the CLI's token, the box's server's administrator token and Hypha bridge key).
            if matches!(rest, "DATA_DIR" | "CACHE_DIR" | "IN_BOX" | "CONFIG" | "LOG" | "TOKEN" | "ADMIN_TOKEN" | "HYPHA_BRIDGE_KEY" | "SERVER") {
                continue;
            }
            let parts: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            // A value is TOML when it parses as one (numbers, booleans), else a string.
            let v = format!("v = {value}").parse::<toml::Table>().ok().and_then(|mut t| t.remove("v")).unwrap_or(toml::Value::String(value));
            let mut table = &mut doc;
            for p in &parts[..parts.len() - 1] {
                table = table
                    .entry(p.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                    .as_table_mut()
                    .ok_or_else(|| ConfigError::Invalid(format!("{key}: {p} is not a section")))?;
            }
            table.insert(parts[parts.len() - 1].clone(), v);
        }
        let cfg: Config = toml::Value::Table(doc).try_into().map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Checks the values against each other and their bounds.
    pub fn check(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let d = &self.defaults;
        let bad = |m: &str| Err(ConfigError::Invalid(m.into()));
        if l.max_vcpus == 0 || l.min_mem_mib > l.max_mem_mib || l.max_disk_gib == 0 {
            return bad("limits: max_vcpus and max_disk_gib must be positive, min_mem_mib <= max_mem_mib");
        }
        if l.max_name_len == 0 || l.max_name_len > hearth_runtime::spec::MAX_NAME_LEN {
            return bad(&format!("limits.max_name_len must be 1-{}", hearth_runtime::spec::MAX_NAME_LEN));
        }
        if l.max_requests_in_flight == 0 || l.request_timeout_secs == 0 || l.header_read_timeout_secs == 0 {
            return bad("limits: max_requests_in_flight, request_timeout_secs and header_read_timeout_secs must be positive");
        }
        if d.vcpu_count == 0
            || d.vcpu_count > l.max_vcpus
            || d.mem_size_mib < l.min_mem_mib
            || d.mem_size_mib > l.max_mem_mib
            || d.disk_size_gib == 0
            || d.disk_size_gib > l.max_disk_gib
        {
            return bad("defaults must lie within limits");
        }
        if d.rx_mbps > l.max_bandwidth_mbps || d.tx_mbps > l.max_bandwidth_mbps {
            return bad("defaults.rx_mbps and defaults.tx_mbps must lie within limits (0-limits.max_bandwidth_mbps; 0: unlimited)");
        }
        if u128::from(self.guest_halt_poll_us) > hearth_vmm::MAX_HALT_POLL.as_micros() {
            return bad(&format!("guest_halt_poll_us must be at most {}", hearth_vmm::MAX_HALT_POLL.as_micros()));
        }
        self.auth.check().map_err(ConfigError::Invalid)?;
        self.hypha.check().map_err(ConfigError::Invalid)?;
        self.tls.check().map_err(ConfigError::Invalid)?;
        self.network.check().map_err(ConfigError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_file_and_environment_layer() {
        assert_eq!(Config::load(None, env(&[])).unwrap(), Config::default());
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("hearth.toml");
        std::fs::write(&f, "listen = \"127.0.0.1:9000\"\n[limits]\nmax_vcpus = 4\n").unwrap();
        let c = Config::load(Some(&f), env(&[("HEARTH_LIMITS__MAX_VCPUS", "6"), ("HEARTH_DEFAULTS__RECIPE", "mine"), ("HEARTH_DATA_DIR", "/x"), ("PATH", "/bin")])).unwrap();
        assert_eq!((c.listen.port(), c.limits.max_vcpus, c.defaults.recipe.as_str()), (9000, 6, "mine"));
    }

    #[test]
    fn workers_default_to_half_the_cpus_and_can_be_set() {
        let cpus = std::thread::available_parallelism().unwrap().get();
        assert_eq!(Config::default().worker_threads(), (cpus / 2).max(1));
        assert_eq!(Config::load(None, env(&[("HEARTH_WORKERS", "3")])).unwrap().worker_threads(), 3);
    }

    #[test]
    fn bad_keys_and_values_are_refused_clearly() {
        let e = Config::load(None, env(&[("HEARTH_LIMITS__MAX_VCPU", "6")])).unwrap_err().to_string();
        assert!(e.contains("max_vcpu"), "{e}");
        let e = Config::load(None, env(&[("HEARTH_LISTEN", "nowhere")])).unwrap_err().to_string();
        assert!(e.contains("listen") || e.contains("invalid"), "{e}");
        let e = Config::load(None, env(&[("HEARTH_GUEST_HALT_POLL_US", "20000")])).unwrap_err().to_string();
        assert!(e.contains("at most 10000"), "{e}");
        assert_eq!(Config::load(None, env(&[("HEARTH_GUEST_HALT_POLL_US", "500")])).unwrap().guest_halt_poll(), Duration::from_micros(500));
        let e = Config::load(None, env(&[("HEARTH_DEFAULTS__VCPU_COUNT", "99")])).unwrap_err().to_string();
        assert!(e.contains("within limits"), "{e}");
    }
}
