//! hearth-agent: PID 1 in every workstation.
//!
//! Today it does the init duties (early mounts, reaping) and announces readiness with its
//! boot time on the serial console, which the host watches for. The agent protocol over vsock
//! (exec, files, PTY sessions) arrives with the runtime issue.

/// The line the host waits for on the serial console; `probe` in hearth-vmm parses it.
const READY_PREFIX: &str = "hearth-agent: ready";

fn main() {
    if std::process::id() != 1 {
        eprintln!("hearth-agent runs as PID 1 inside a workstation (kernel command line init=/sbin/hearth-agent)");
        std::process::exit(2);
    }
    if let Err(e) = hearth_init::mount_all(hearth_init::BASIC_MOUNTS) {
        // PID 1 must not exit: report and keep going with what is mounted.
        hearth_init::console(&format!("hearth-agent: {e}: {}", std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default()));
    }
    hearth_init::console(&format!("{READY_PREFIX} boot_ms={} version={}", hearth_init::uptime_ms(), env!("CARGO_PKG_VERSION")));
    hearth_init::reap_forever()
}
