//! Idle hibernation: a running workstation nobody uses is hibernated after
//! `idle.hibernate_after_secs`, handing its memory and vCPUs back to the host; the next use
//! wakes it where it was.
//!
//! "Used" is any of: a call through the service that reached its guest (exec, files,
//! terminals; one still running counts until it ends), a client attached to one of its
//! terminals (the agent counts them), or its Firecracker's CPU time growing by more than
//! `idle.cpu_percent` of one CPU between two checks (a job at work with nobody watching).
//! Paused workstations are left as they are: someone paused them on purpose.
//!
//! Must not: hibernate a workstation with a call in flight, or decide for stopped,
//! paused or crashed ones.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hearth_proto::api::WorkstationState;
use hearth_proto::unix_ms_now;

use crate::Service;

/// What the service has seen of each running workstation's use.
#[derive(Default)]
pub(crate) struct Activity(Arc<Mutex<HashMap<String, Seen>>>);

#[derive(Clone, Copy)]
struct Seen {
    last_used: Instant,
    /// Calls in flight now.
    busy: usize,
    /// Its Firecracker's CPU time at the last check, and when that was.
    cpu: Option<(Instant, Duration)>,
}

impl Seen {
    fn new(now: Instant) -> Seen {
        Seen { last_used: now, busy: 0, cpu: None }
    }
}

/// Held while a call uses a workstation's guest: it is in use until this drops.
pub(crate) struct InUse {
    seen: Arc<Mutex<HashMap<String, Seen>>>,
    id: String,
}

impl Drop for InUse {
    fn drop(&mut self) {
        let mut m = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let s = m.entry(self.id.clone()).or_insert_with(|| Seen::new(Instant::now()));
        s.busy = s.busy.saturating_sub(1);
        s.last_used = Instant::now();
    }
}

impl Activity {
    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<String, Seen>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Workstation `id` is in use until the returned guard drops.
    pub(crate) fn using(&self, id: &str) -> InUse {
        let now = Instant::now();
        let mut m = self.seen();
        let s = m.entry(id.to_string()).or_insert_with(|| Seen::new(now));
        s.busy += 1;
        s.last_used = now;
        InUse { seen: self.0.clone(), id: id.to_string() }
    }
}

/// Why a workstation was found in use, or None when it has been idle long enough.
fn verdict(s: &mut Seen, now: Instant, cpu: Option<Duration>, after: Duration, cpu_percent: f64) -> Option<&'static str> {
    if let Some(cpu) = cpu {
        if let Some((then, before)) = s.cpu {
            let span = now.saturating_duration_since(then).as_secs_f64();
            if span > 0.0 && cpu.saturating_sub(before).as_secs_f64() * 100.0 > cpu_percent * span {
                s.last_used = now;
            }
        }
        s.cpu = Some((now, cpu));
    }
    if s.busy > 0 {
        s.last_used = now;
        return Some("a call in flight");
    }
    (now.saturating_duration_since(s.last_used) < after).then_some("used recently")
}

impl Service {
    /// Hibernates the running workstations idle for `idle.hibernate_after_secs` (see the
    /// module docs); returns their ids. Blocks; the server calls it now and then.
    pub fn hibernate_idle(&self) -> Vec<String> {
        let idle = &self.config.idle;
        if idle.hibernate_after_secs == 0 {
            return Vec::new();
        }
        let after = Duration::from_secs(idle.hibernate_after_secs);
        let rows = match self.store.list() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("listing workstations for idle hibernation: {e}");
                return Vec::new();
            }
        };
        // Each VMM's CPU time read before taking the lock that every call to a guest takes
        // too: reading /proc for thousands of workstations must not hold those calls up.
        let running: HashMap<String, Option<Duration>> =
            rows.into_iter().filter(|r| r.state == WorkstationState::Running).map(|r| (r.id.clone(), self.backend.cpu_time(&r.id))).collect();
        let now = Instant::now();
        let mut due = Vec::new();
        {
            let mut seen = self.activity.seen();
            // Forget what no longer runs: it starts afresh when it runs again.
            seen.retain(|id, s| s.busy > 0 || running.contains_key(id));
            for (id, cpu) in &running {
                // First seen (just started, or this server just started): as good as used now.
                let s = seen.entry(id.clone()).or_insert_with(|| Seen::new(now));
                if verdict(s, now, *cpu, after, f64::from(idle.cpu_percent)).is_none() {
                    due.push(id.clone());
                }
            }
        }
        let mut done = Vec::new();
        for id in due {
            // Someone watching one of its terminals keeps it awake.
            let attached = self.backend.agent(&id, crate::AGENT_TIMEOUT).and_then(|mut a| a.pty_list().map_err(|e| hearth_runtime::RuntimeError::Vmm(e.into())));
            match attached {
                Ok(ptys) if ptys.iter().any(|p| p.attached > 0) => {
                    self.activity.seen().entry(id).and_modify(|s| s.last_used = now);
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(workstation = %id, "asking an idle workstation's agent about its terminals: {e}");
                    continue;
                }
            }
            let idle_for = if after.as_secs() < 120 { format!("{} s", after.as_secs()) } else { format!("{} min", after.as_secs() / 60) };
            match self.hibernate_now(&id, &format!("idle for {idle_for}")) {
                Ok(_recorded) => {
                    self.activity.seen().remove(&id);
                    done.push(id);
                }
                Err(e) => {
                    tracing::warn!(workstation = %id, "hibernating an idle workstation: {e}");
                    let _ = self.store.event(&id, "hibernate_failed", &format!("idle: {e}"), unix_ms_now());
                    // Not again at once: it counts as used now.
                    self.activity.seen().entry(id).and_modify(|s| s.last_used = now);
                }
            }
        }
        done
    }

    /// Checks for idle workstations for the server's life (a quarter of
    /// `idle.hibernate_after_secs` apart, at most a minute).
    pub async fn watch_idle(self: Arc<Self>) {
        let after = self.config.idle.hibernate_after_secs;
        if after == 0 {
            return;
        }
        let every = Duration::from_secs((after / 4).clamp(1, 60));
        let mut stopping = self.stopping();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stopping.wait_for(|s| *s) => return,
            }
            let svc = self.clone();
            let done = tokio::task::spawn_blocking(move || svc.hibernate_idle()).await.unwrap_or_default();
            if !done.is_empty() {
                tracing::info!(workstations = ?done, "hibernated idle workstations");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_cpu_and_calls_in_flight_keep_a_workstation_awake() {
        let t0 = Instant::now();
        let after = Duration::from_secs(60);
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut s = Seen::new(t0);
        assert_eq!(verdict(&mut s, at(10), Some(Duration::ZERO), after, 10.0), Some("used recently"));
        // 61 s on, 1 s of CPU over the last 51 s: under 10 %, idle.
        assert_eq!(verdict(&mut s, at(61), Some(Duration::from_secs(1)), after, 10.0), None);
        // Then 30 s of CPU in 60 s: 50 %, in use from now.
        assert_eq!(verdict(&mut s, at(121), Some(Duration::from_secs(31)), after, 10.0), Some("used recently"));
        assert_eq!(s.last_used, at(121));
        // A call in flight holds it however long it takes.
        s.busy = 1;
        assert_eq!(verdict(&mut s, at(500), Some(Duration::from_secs(31)), after, 10.0), Some("a call in flight"));
        s.busy = 0;
        assert_eq!(verdict(&mut s, at(561), None, after, 10.0), None);
    }
}
