//! hearth-agent: PID 1 in every workstation.
//!
//! PID 1 does the init duties (early mounts, reaping orphans) and supervises one child that
//! serves the control protocol (docs/protocol.md) on vsock port 1024: exec (as any user of
//! the image, with stdin), files, terminal sessions (which live in that child), health,
//! clock, shutdown. Once that listener is bound, the child announces readiness
//! with the guest's boot time on the serial console, which the host watches for.
//! Before that, PID 1 enters the workstation's overlay root ([`root`]) and sets the hostname
//! the host passed on the kernel command line.

mod net;
mod root;

use std::sync::Arc;
use std::time::Duration;

use hearth_exec::server::{serve_incoming, ConnLimit, ServerConfig};
use hearth_init::console;
use hearth_proto::control::{capability, AGENT_VSOCK_PORT};

/// The line the host waits for on the serial console; hearth-vmm's probe parses it.
const READY_PREFIX: &str = "hearth-agent: ready";
/// Control connections served at once.
const MAX_CONNECTIONS: usize = 128;
/// VMADDR_CID_ANY: accept connections addressed to this guest.
const CID_ANY: u32 = u32::MAX;

/// Environment every command starts with: the image's venv first on PATH.
fn command_env() -> Vec<(String, String)> {
    [("PATH", "/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"), ("HOME", "/root"), ("LANG", "C.UTF-8"), ("TERM", "xterm-256color")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn main() {
    if std::process::id() != 1 {
        eprintln!("hearth-agent runs as PID 1 inside a workstation (kernel command line init=/sbin/hearth-agent)");
        std::process::exit(2);
    }
    basic_mounts();
    let params = root::parse_cmdline(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default());
    if let Some(upper) = &params.overlay {
        match root::enter_overlay_root(upper) {
            // The new root has its own empty /proc, /dev, /run…
            Ok(()) => basic_mounts(),
            // PID 1 must not exit: keep serving from the read-only base, and say so.
            Err(e) => console(&format!("hearth-agent: overlay root failed, staying on the read-only base: {e}")),
        }
    }
    if let Some(name) = &params.hostname {
        if let Err(e) = root::set_hostname(name) {
            console(&format!("hearth-agent: {e}"));
        }
    }
    network(&params);
    hearth_init::supervise("hearth-agent", serve)
}

/// Loopback always; eth0 and resolv.conf when the host gave settings. Failures are reported
/// and the agent serves on (vsock does not need the network).
fn network(params: &root::BootParams) {
    let report = |r: Result<(), String>| {
        if let Err(e) = r {
            console(&format!("hearth-agent: network: {e}"));
        }
    };
    report(net::loopback_up());
    if let Some(v) = &params.net {
        report(net::parse_net(v).and_then(|p| net::configure(&p)));
    }
    if let Some(v) = &params.dns {
        report(net::parse_dns(v).and_then(|ips| {
            // resolv.conf is often a dangling symlink in images; replace whatever is there.
            let _ = std::fs::remove_file("/etc/resolv.conf");
            hearth_fs::write_atomic(std::path::Path::new("/etc/resolv.conf"), net::resolv_conf(&ips).as_bytes()).map_err(|e| format!("writing /etc/resolv.conf: {e}"))
        }));
    }
}

fn basic_mounts() {
    if let Err(e) = hearth_init::mount_all(hearth_init::BASIC_MOUNTS) {
        // PID 1 must not exit: report and keep going with what is mounted.
        let cause = std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default();
        console(&format!("hearth-agent: {e}: {cause}"));
    }
}

/// The supervised child: bind, announce, serve.
fn serve() -> i32 {
    let listener = match vsock::VsockListener::bind_with_cid_port(CID_ANY, AGENT_VSOCK_PORT) {
        Ok(l) => l,
        Err(e) => {
            console(&format!("hearth-agent: cannot listen on vsock port {AGENT_VSOCK_PORT}: {e}"));
            return 1;
        }
    };
    console(&format!("{READY_PREFIX} boot_ms={} version={}", hearth_init::uptime_ms(), env!("CARGO_PKG_VERSION")));
    let cfg = ServerConfig {
        token: None,
        env: command_env(),
        on_shutdown: Box::new(shutdown),
        uptime_ms: hearth_init::uptime_ms,
        capabilities: [
            capability::EXEC,
            capability::EXEC_AS_USER,
            capability::EXEC_STDIN,
            capability::FILES,
            capability::PTY,
            capability::HEALTH,
            capability::SET_TIME,
            capability::ADD_ENTROPY,
            capability::SHUTDOWN,
        ]
        .map(String::from)
        .to_vec(),
        allow_machine_settings: true,
        ptys: Default::default(),
    };
    serve_incoming(listener.incoming(), Arc::new(cfg), ConnLimit::new(MAX_CONNECTIONS));
    console("hearth-agent: control listener stopped");
    1
}

/// Ordered shutdown. Firecracker runs guests with `reboot=k`, so the final reboot ends the VM.
/// The overlay's upper disk is mounted outside PID 1's chroot: sync covers it.
fn shutdown() {
    hearth_init::shut_down("hearth-agent", Duration::from_millis(300), &[])
}
