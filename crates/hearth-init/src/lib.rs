//! PID 1 duties, shared by the guest agent (PID 1 in every workstation) and the box's init.
//!
//! Owns: the early mounts, writing to the console, reaping every orphan, keeping the real
//! work alive in a supervised child, and powering the machine off. It must not know what the
//! work is: callers hand it a `main` function.
//!
//! Why a child: std's `Command` waits for its own children, and a PID 1 that calls
//! `waitpid(-1)` would steal those exit statuses. So PID 1 only reaps, and the work runs in one
//! forked child that waits for its own children normally (the tini model).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sys::reboot::{reboot, RebootMode};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("mount {what} on {target} failed")]
    Mount {
        what: String,
        target: String,
        #[source]
        source: Errno,
    },
    #[error("creating {0} failed")]
    Mkdir(String, #[source] std::io::Error),
}

/// One mount PID 1 performs.
#[derive(Debug, Clone, Copy)]
pub struct MountSpec {
    pub source: &'static str,
    pub target: &'static str,
    pub fstype: &'static str,
    pub flags: MsFlags,
    pub data: Option<&'static str>,
}

const NOSUID_NODEV: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV);

/// The mounts every hearth PID 1 needs, in order.
pub const BASIC_MOUNTS: &[MountSpec] = &[
    MountSpec { source: "proc", target: "/proc", fstype: "proc", flags: NOSUID_NODEV.union(MsFlags::MS_NOEXEC), data: None },
    MountSpec { source: "sysfs", target: "/sys", fstype: "sysfs", flags: NOSUID_NODEV.union(MsFlags::MS_NOEXEC), data: None },
    MountSpec { source: "devtmpfs", target: "/dev", fstype: "devtmpfs", flags: MsFlags::MS_NOSUID, data: Some("mode=0755") },
    MountSpec { source: "devpts", target: "/dev/pts", fstype: "devpts", flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC), data: Some("gid=5,mode=620,ptmxmode=666") },
    MountSpec { source: "tmpfs", target: "/dev/shm", fstype: "tmpfs", flags: NOSUID_NODEV, data: Some("mode=1777") },
    MountSpec { source: "tmpfs", target: "/run", fstype: "tmpfs", flags: NOSUID_NODEV, data: Some("mode=0755") },
    MountSpec { source: "tmpfs", target: "/tmp", fstype: "tmpfs", flags: NOSUID_NODEV, data: Some("mode=1777") },
];

/// Mounts each spec, creating its mount point. A target that is already mounted
/// (the kernel mounts devtmpfs itself with DEVTMPFS_MOUNT) is left as it is.
pub fn mount_all(specs: &[MountSpec]) -> Result<(), InitError> {
    for m in specs {
        if is_mount_point(m.target) {
            continue;
        }
        if !Path::new(m.target).exists() {
            std::fs::create_dir_all(m.target).map_err(|e| InitError::Mkdir(m.target.into(), e))?;
        }
        mount(Some(m.source), m.target, Some(m.fstype), m.flags, m.data).map_err(|source| InitError::Mount { what: m.fstype.into(), target: m.target.into(), source })?;
    }
    Ok(())
}

/// True if `target` is listed in /proc/self/mounts (false if /proc is not mounted yet).
pub fn is_mount_point(target: &str) -> bool {
    std::fs::read_to_string("/proc/self/mounts").map(|m| m.lines().any(|l| l.split(' ').nth(1) == Some(target))).unwrap_or(false)
}

/// Writes one line to the console (falls back to stderr before /dev is mounted).
pub fn console(line: &str) {
    let written = OpenOptions::new().write(true).open("/dev/console").and_then(|mut c| c.write_all(format!("{line}\n").as_bytes()));
    if written.is_err() {
        eprintln!("{line}");
    }
}

/// Milliseconds since the kernel started (CLOCK_BOOTTIME): the boot time a PID 1 reports.
pub fn uptime_ms() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).map(|t| t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000).unwrap_or(0)
}

/// Reaps every child forever. For a PID 1 with no work of its own.
pub fn reap_forever() -> ! {
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(_) | Err(Errno::EINTR) => {}
            // No children right now: orphans may still arrive, check again shortly.
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// Runs `main` in a forked child and reaps everything; if `main`'s process dies it is logged
/// on the console and started again, so PID 1 never exits.
///
/// Call it while the process has a single thread (fork copies only the caller's thread).
pub fn supervise(name: &str, main: fn() -> i32) -> ! {
    let mut restarts = 0u32;
    loop {
        // SAFETY: the caller guarantees a single-threaded process; the child only runs `main`
        // and exits, it never returns into the parent's state.
        let child = match unsafe { fork() } {
            Ok(ForkResult::Child) => std::process::exit(main()),
            Ok(ForkResult::Parent { child }) => child,
            Err(e) => {
                console(&format!("{name}: fork failed: {e}; retrying"));
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        loop {
            match waitpid(Pid::from_raw(-1), None) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => {
                    console(&format!("{name}: main process exited with {code}; restarting"));
                    break;
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => {
                    console(&format!("{name}: main process killed by {sig}; restarting"));
                    break;
                }
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        restarts += 1;
        // Back off when the main process keeps dying, instead of spinning.
        std::thread::sleep(Duration::from_millis(100 * u64::from(restarts.min(50))));
    }
}

/// An ordered stop of the whole machine, from PID 1's supervised child: every other process
/// gets SIGTERM, then (after `grace`) SIGKILL; file systems are synced, `unmount` targets
/// unmounted (failures logged: they were synced), and the machine powers off.
pub fn shut_down(name: &str, grace: Duration, unmount: &[&str]) -> ! {
    console(&format!("{name}: shutting down"));
    // kill(-1) reaches every process but PID 1 and the caller.
    let _ = nix::sys::signal::kill(Pid::from_raw(-1), nix::sys::signal::Signal::SIGTERM);
    std::thread::sleep(grace);
    let _ = nix::sys::signal::kill(Pid::from_raw(-1), nix::sys::signal::Signal::SIGKILL);
    nix::unistd::sync();
    for target in unmount {
        if let Err(e) = nix::mount::umount(*target) {
            console(&format!("{name}: unmounting {target} failed: {e}; it was synced"));
        }
    }
    power_off()
}

/// Flushes file systems and stops the machine. `-no-reboot` QEMU and Firecracker
/// (`reboot=k`) both exit when their guest asks to reboot, so that is what a stop is.
pub fn power_off() -> ! {
    nix::unistd::sync();
    let _ = reboot(RebootMode::RB_AUTOBOOT);
    // reboot(2) only returns on failure (not PID 1's namespace or no CAP_SYS_BOOT).
    std::process::exit(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_a_mount_point_and_a_plain_dir_is_not() {
        assert!(is_mount_point("/"));
        let d = std::env::temp_dir().join("hearth-init-not-a-mount");
        std::fs::create_dir_all(&d).unwrap();
        assert!(!is_mount_point(d.to_str().unwrap()));
    }

    #[test]
    fn uptime_is_positive() {
        assert!(uptime_ms() > 0);
    }
}

/// Processes this crate's callers supervise from outside PID 1 (QEMU, Firecracker).
pub mod proc {
    use nix::errno::Errno;
    use nix::sys::signal::kill;
    use nix::sys::wait::{waitpid, WaitPidFlag};
    use nix::unistd::Pid;

    /// Reaps `pid` if it is our child and has exited (no-op otherwise).
    pub fn reap(pid: u32) {
        let _ = waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG));
    }

    /// True if `pid` is alive and its command line contains `name` (a recycled pid is not
    /// ours). Reaps it first if it is our exited child, so a zombie never counts as alive.
    pub fn is_alive(pid: u32, name: &str) -> bool {
        reap(pid);
        if kill(Pid::from_raw(pid as i32), None) == Err(Errno::ESRCH) {
            return false;
        }
        match std::fs::read(format!("/proc/{pid}/cmdline")) {
            // Empty while the process is inside execve (a jailer becoming Firecracker) and
            // for a zombie: alive unless it is the zombie.
            Ok(c) if c.is_empty() => {
                std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| s.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z'))).unwrap_or(false)
            }
            Ok(c) => String::from_utf8_lossy(&c).contains(name),
            Err(_) => false,
        }
    }

    /// The CPU time `pid` has used, all its threads, user and system; none when it is gone.
    pub fn cpu_time(pid: u32) -> Option<std::time::Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        cpu_time_of(&stat)
    }

    /// The memory `pid` holds in RAM (its VmRSS); none when it is gone.
    pub fn rss_bytes(pid: u32) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib: u64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib << 10)
    }

    /// utime + stime from a `/proc/<pid>/stat` line (fields 14 and 15, counted past the
    /// command name, which may hold spaces and parentheses).
    fn cpu_time_of(stat: &str) -> Option<std::time::Duration> {
        let (_, rest) = stat.rsplit_once(") ")?;
        let mut f = rest.split_whitespace().skip(11);
        let ticks: u64 = f.next()?.parse::<u64>().ok()? + f.next()?.parse::<u64>().ok()?;
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().filter(|&h| h > 0).unwrap_or(100) as u64;
        Some(std::time::Duration::from_millis(ticks * 1000 / hz))
    }

    /// Waits up to `timeout` for `pid` to stop being alive.
    pub fn wait_gone(pid: u32, name: &str, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if !is_alive(pid, name) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        !is_alive(pid, name)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn cpu_time_reads_utime_and_stime_past_an_odd_name() {
            let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).unwrap().unwrap() as u64;
            let line = format!("42 (fire cracker) (x)) S 1 42 42 0 -1 4194560 100 0 0 0 {} {} 0 0 20 0 3 0", 3 * hz, hz / 2);
            assert_eq!(super::cpu_time_of(&line), Some(std::time::Duration::from_millis(3500)));
            assert_eq!(super::cpu_time_of("garbage"), None);
            assert!(super::cpu_time(std::process::id()).is_some());
            assert!(super::rss_bytes(std::process::id()).is_some_and(|b| b > 0));
        }
    }
}
