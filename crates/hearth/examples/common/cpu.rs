//! A process's CPU time and use from /proc (shared by `#[path]` between the benchmark examples).

/// CPU time (user + system, all threads) the process has used, in seconds.
pub(crate) fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("firecracker's /proc stat");
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<f64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0.0)).collect();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as f64;
    (f[11] + f[12]) / hz
}

/// The CPU process `pid` uses while `during` runs, in percent of one CPU.
pub(crate) fn cpu_percent(pid: u32, during: impl FnOnce()) -> f64 {
    let (c0, t0) = (cpu_secs(pid), std::time::Instant::now());
    during();
    (cpu_secs(pid) - c0) / t0.elapsed().as_secs_f64() * 100.0
}
