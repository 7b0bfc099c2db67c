//! `hearth box init`: PID 1 of the box, exec'd by the box image's `/init` script once the
//! hearth share is mounted.
//!
//! Mounts the rest (cgroup v2 with controllers delegated for the jailer, the artifact cache,
//! the persistent data disk), brings up the network QEMU forwards the control port over,
//! announces readiness on the console, and runs the control server under supervision.

use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use hearth_init::{console, MountSpec};
use nix::mount::MsFlags;

use crate::{BOX_ADDR, BOX_GATEWAY, BOX_UPLINK, CACHE_MOUNT, CACHE_TAG, CONTROL_PORT, DATA_DEVICE, DATA_MOUNT, READY_LINE, SHARE_MOUNT};
use hearth_exec::server::{serve_incoming, ConnLimit, ServerConfig};
use hearth_proto::control::capability;

/// The cache share is mounted `cache=loose`: artifacts are immutable (content-addressed), so
/// the box may keep their pages (kernel, firecracker, guest image blocks) in its page cache.
/// Connections the control server serves at once.
const MAX_CONNECTIONS: usize = 64;

const BOX_MOUNTS: &[MountSpec] = &[
    MountSpec { source: "cgroup2", target: "/sys/fs/cgroup", fstype: "cgroup2", flags: MsFlags::empty(), data: None },
    MountSpec { source: CACHE_TAG, target: CACHE_MOUNT, fstype: "9p", flags: MsFlags::MS_RDONLY, data: Some("trans=virtio,version=9p2000.L,msize=524288,cache=loose") },
    MountSpec { source: DATA_DEVICE, target: DATA_MOUNT, fstype: "ext4", flags: MsFlags::MS_NOATIME, data: None },
];

/// Environment of every command the box runs for a client.
fn command_env() -> Vec<(String, String)> {
    [
        ("PATH", format!("{SHARE_MOUNT}/bin:/usr/sbin:/usr/bin:/sbin:/bin")),
        ("HOME", "/root".into()),
        ("HEARTH_CACHE_DIR", CACHE_MOUNT.into()),
        ("HEARTH_DATA_DIR", DATA_MOUNT.into()),
        ("HEARTH_IN_BOX", "1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

pub fn run() -> ! {
    if std::process::id() != 1 {
        eprintln!("`hearth box init` is PID 1 inside the box; on the host use `hearth box start`");
        std::process::exit(2);
    }
    for step in [
        hearth_init::mount_all(hearth_init::BASIC_MOUNTS).map_err(|e| e.to_string()),
        hearth_init::mount_all(BOX_MOUNTS).map_err(|e| format!("{e}: {}", std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default())),
        dev_links(),
        delegate_cgroup_controllers(),
        network_up(),
    ] {
        // PID 1 keeps going: report on the console, the host sees it in console.log.
        if let Err(e) = step {
            console(&format!("hearth-box: {e}"));
        }
    }
    console(&format!("{READY_LINE} boot_ms={}", hearth_init::uptime_ms()));
    hearth_init::supervise("hearth-box", server_main)
}

/// The links udev would make in /dev and devtmpfs does not: `nft -f -` (hearth-net's
/// rules) reads `/dev/stdin`, and scripts expect `/dev/fd`.
fn dev_links() -> Result<(), String> {
    for (link, to) in [("/dev/fd", "/proc/self/fd"), ("/dev/stdin", "/proc/self/fd/0"), ("/dev/stdout", "/proc/self/fd/1"), ("/dev/stderr", "/proc/self/fd/2")] {
        match std::os::unix::fs::symlink(to, link) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(format!("linking {link} to {to}: {e}")),
            _ => {}
        }
    }
    Ok(())
}

/// The jailer puts each Firecracker in its own cgroup with cpu/memory/pids limits.
fn delegate_cgroup_controllers() -> Result<(), String> {
    std::fs::write("/sys/fs/cgroup/cgroup.subtree_control", "+cpu +memory +pids +cpuset").map_err(|e| format!("enabling cgroup controllers: {e}"))
}

fn network_up() -> Result<(), String> {
    let mut steps = vec![&["link", "set", "lo", "up"][..], &["addr", "add", BOX_ADDR, "dev", BOX_UPLINK], &["link", "set", BOX_UPLINK, "up"]];
    // A box whose QEMU lets traffic out routes workstations' NAT egress through it.
    let egress = std::fs::read_to_string("/proc/cmdline").is_ok_and(|c| c.split_whitespace().any(|w| w == crate::qemu::EGRESS_ARG));
    if egress {
        steps.push(&["route", "add", "default", "via", BOX_GATEWAY, "dev", BOX_UPLINK]);
    }
    for args in steps {
        let status = Command::new("ip").args(args).status().map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
        if !status.success() {
            return Err(format!("ip {} failed ({status})", args.join(" ")));
        }
    }
    Ok(())
}

fn server_main() -> i32 {
    let token = match std::fs::read_to_string(format!("{SHARE_MOUNT}/token")) {
        Ok(t) => t.trim().to_string(),
        Err(e) => {
            console(&format!("hearth-box: cannot read the control token: {e}"));
            return 1;
        }
    };
    let listener = match TcpListener::bind(("0.0.0.0", CONTROL_PORT)) {
        Ok(l) => l,
        Err(e) => {
            console(&format!("hearth-box: cannot listen on port {CONTROL_PORT}: {e}"));
            return 1;
        }
    };
    let cfg = ServerConfig {
        token: Some(token),
        env: command_env(),
        on_shutdown: Box::new(shutdown),
        uptime_ms: hearth_init::uptime_ms,
        capabilities: [capability::EXEC, capability::EXEC_STDIN, capability::FILES, capability::PTY, capability::HEALTH, capability::SHUTDOWN].map(String::from).to_vec(),
        allow_machine_settings: false,
        ptys: Default::default(),
    };
    serve_incoming(listener.incoming(), Arc::new(cfg), ConnLimit::new(MAX_CONNECTIONS));
    console("hearth-box: control server stopped");
    1
}

/// Stops everything, flushes and unmounts the data disk, powers off (QEMU then exits).
fn shutdown() {
    hearth_init::shut_down("hearth-box", Duration::from_millis(500), &[DATA_MOUNT])
}
