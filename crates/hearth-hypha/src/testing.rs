//! For tests: a REAL Hypha server (PyPI `hypha`, pinned in scripts/hypha-env.sh, started
//! with a JWT secret on a loopback port), tokens signed as it signs them, and runs of
//! testing/hypha_client.py, a `hypha-rpc` client of hearth's Hypha service whose scenarios
//! check their own steps.
//!
//! Must not: be used outside tests (compiled only with the `testing` feature).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

/// The secret the test servers sign with.
pub const SECRET: &str = "hearth-test-secret";
/// The audience of the tokens Hypha makes.
pub const AUDIENCE: &str = "https://amun-ai.eu.auth0.com/api/v2/";

/// A Hypha server on a loopback port; killed when dropped.
pub struct Hypha {
    child: Child,
    pub url: String,
    pub port: u16,
    /// The venv's python (with `hypha-rpc`).
    pub python: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Hypha {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The venv's python (made on first use by the script, then cached by its pins' hash).
pub fn python() -> PathBuf {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/hypha-env.sh");
    let out = Command::new("bash").arg(script).stderr(Stdio::inherit()).output().expect("running scripts/hypha-env.sh");
    assert!(out.status.success(), "scripts/hypha-env.sh failed");
    PathBuf::from(String::from_utf8(out.stdout).expect("a path").trim())
}

impl Hypha {
    /// A server on a free port.
    pub fn start() -> Hypha {
        // The probe's socket is closed before the server binds the port.
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("its address").port();
        Hypha::start_on(port)
    }

    /// A server on `port` (again, after one there stopped).
    pub fn start_on(port: u16) -> Hypha {
        let python = python();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut child = Command::new(&python)
            .args(["-m", "hypha.server", "--host", "127.0.0.1", "--port", &port.to_string()])
            .env("HYPHA_JWT_SECRET", SECRET)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the Hypha server");
        // Its log, kept for a failure's message.
        let stderr = child.stderr.take().expect("piped");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("no panics while held").push_str(&(line + "\n"));
            }
        });
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(120);
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(5)).build();
        loop {
            if agent.get(&format!("{url}/health/readiness")).call().ok().and_then(|r| r.into_string().ok()).is_some_and(|b| b.contains("OK")) {
                break;
            }
            assert!(Instant::now() < deadline, "the Hypha server was not ready within 120 s:\n{}", log.lock().expect("no panics while held"));
            std::thread::sleep(Duration::from_millis(250));
        }
        Hypha { child, url, port, python, _dir: dir }
    }

    /// A token signed with the server's secret, as Hypha makes them (for the users a test
    /// needs; Hypha's own sign-up wants a verified email).
    pub fn mint(&self, sub: &str, email: Option<&str>, roles: &[&str], exp_in: i64, aud: &str, secret: &str) -> String {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs() as i64;
        let claims = json!({"iss": "https://amun.ai/", "aud": aud, "sub": sub, "iat": now, "exp": now + exp_in,
            "scope": format!("ws:ws-user-{sub}#a wid:ws-user-{sub}"), "https://amun.ai/roles": roles, "https://amun.ai/email": email});
        jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(secret.as_bytes())).expect("signing")
    }

    /// A user's token, valid for an hour.
    pub fn user(&self, sub: &str, email: &str) -> String {
        self.mint(sub, Some(email), &["user"], 3600, AUDIENCE, SECRET)
    }

    /// Runs a scenario of testing/hypha_client.py against `service` as the holder of `token`
    /// (None: anonymously); its output. The scenario checks its own steps; `want` are steps
    /// it must have said were ok.
    pub fn client(&self, service: &str, token: Option<&str>, scenario: &str, arg: Option<&str>, want: &[&str]) -> String {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/testing/hypha_client.py");
        let out = Command::new(&self.python)
            .arg(script)
            .args([self.url.as_str(), token.unwrap_or("-"), service, scenario])
            .args(arg)
            .stderr(Stdio::inherit())
            .output()
            .expect("running the client");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "scenario {scenario} failed ({}); it said:\n{text}", out.status);
        for step in want {
            assert!(text.lines().any(|l| l == format!("ok {step}")), "scenario {scenario} did not say `ok {step}`:\n{text}");
        }
        text
    }
}

impl Hypha {
    /// Runs docs/examples/hypha-terminal.py against `service` as the holder of `token`; its
    /// output (the example checks its own answer and fails otherwise).
    pub fn python_example(&self, service: &str, token: &str) -> String {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/examples/hypha-terminal.py");
        let out = Command::new(&self.python).arg(script).envs(self.example_env(service, token)).stderr(Stdio::inherit()).output().expect("running python");
        example_output("hypha-terminal.py", out)
    }

    /// Runs docs/examples/hypha-terminal.mjs with Node and the `hypha-rpc` the UI's lockfile
    /// pins (ui/node_modules: the example is copied below it, where its import resolves).
    pub fn js_example(&self, service: &str, token: &str) -> String {
        let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
        let dir = root.join("ui/node_modules/.hearth-test");
        std::fs::create_dir_all(&dir).expect("a directory under ui/node_modules (npm ci made it)");
        let copy = dir.join(format!("hypha-terminal-{}.mjs", std::process::id()));
        std::fs::copy(root.join("docs/examples/hypha-terminal.mjs"), &copy).expect("copying the example");
        // Node 20 has a WebSocket behind this flag; later ones have it anyway.
        let out = Command::new("node").arg("--experimental-websocket").arg(&copy).envs(self.example_env(service, token)).stderr(Stdio::inherit()).output();
        let _ = std::fs::remove_file(&copy);
        example_output("hypha-terminal.mjs", out.expect("node runs (scripts/deps.sh installs it)"))
    }

    fn example_env(&self, service: &str, token: &str) -> [(&'static str, String); 3] {
        [("HYPHA_SERVER_URL", self.url.clone()), ("HYPHA_TOKEN", token.to_string()), ("HEARTH_SERVICE", service.to_string())]
    }
}

fn example_output(name: &str, out: std::process::Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{name} failed ({}); it said:\n{text}", out.status);
    text
}
