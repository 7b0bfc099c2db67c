//! What the benchmarks run in the box share: timing summaries, a child process reaped when
//! dropped, and calls to the server under test with its administrator token.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// (p50, p95, p99, max) of a sample.
pub(crate) fn stats(mut v: Vec<f64>) -> Value {
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    json!({"n": v.len(), "p50_ms": q(0.5), "p95_ms": q(0.95), "p99_ms": q(0.99), "max_ms": q(1.0)})
}

/// A child process killed and reaped when dropped.
pub(crate) struct Reaped(pub(crate) Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a server and returns it with the first line it printed.
pub(crate) fn start(cmd: &mut Command) -> (Reaped, String) {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("spawning a server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    (Reaped(child), line.trim().to_string())
}

/// The administrator token of the server under test (read from its data directory).
pub(crate) static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

pub(crate) fn authorization() -> String {
    format!("Bearer {}", TOKEN.get().map_or("", String::as_str))
}

pub(crate) fn call(method: &str, url: &str, body: Option<Value>) -> Value {
    let req = ureq::request(method, url).timeout(Duration::from_secs(300)).set("Authorization", &authorization());
    let r = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    r.unwrap_or_else(|e| panic!("{method} {url}: {e}")).into_json().unwrap_or(Value::Null)
}
