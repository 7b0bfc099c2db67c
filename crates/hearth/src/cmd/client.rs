//! The CLI's HTTP client for the REST API: which server, with which credential, typed calls,
//! and the server's JSON errors turned into one clear line.
//!
//! The credential, first found: `--token` / `HEARTH_TOKEN`; the token `hearth login` saved
//! for this server (`~/.config/hearth/tokens.json`, mode 0600); the administrator token of
//! this host's server (`<data dir>/admin.token`), when this user can read it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::paths::Paths;

/// Where the server is and how to sign in to it: every command that talks to one.
#[derive(clap::Args, Clone)]
pub(crate) struct Connect {
    /// The server's URL.
    #[arg(long, global = true, env = "HEARTH_SERVER", default_value = "http://127.0.0.1:8080")]
    pub(crate) server: String,
    /// An API token [default: the one `hearth login` saved for this server, else this host's
    /// administrator token when readable].
    #[arg(long, global = true, env = "HEARTH_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

impl Connect {
    pub(crate) fn server(&self) -> String {
        self.server.trim_end_matches('/').to_string()
    }

    /// A client with the first credential found (see the module's doc); none: requests go
    /// without one (and the server says to sign in).
    pub(crate) fn api(&self, paths: &Paths) -> Api {
        let saved = || Saved::load().ok()?.tokens.remove(&self.server());
        let admin = || Some(std::fs::read_to_string(paths.data_dir.join("admin.token")).ok()?.trim().to_string());
        let token = self.token.clone().or_else(saved).or_else(admin).filter(|t| !t.is_empty());
        Api::new(&self.server(), token)
    }
}

/// Tokens `hearth login` saved, per server URL.
#[derive(Serialize, serde::Deserialize, Default)]
pub(crate) struct Saved {
    pub(crate) tokens: BTreeMap<String, String>,
}

impl Saved {
    fn path() -> anyhow::Result<PathBuf> {
        let base = std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
        Ok(base.context("no HOME or XDG_CONFIG_HOME to keep the token in")?.join("hearth/tokens.json"))
    }

    pub(crate) fn load() -> anyhow::Result<Saved> {
        match std::fs::read_to_string(Self::path()?) {
            Ok(text) => serde_json::from_str(&text).context("reading the saved tokens"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Saved::default()),
            Err(e) => Err(e).context("reading the saved tokens"),
        }
    }

    /// Writes the file (0600: it holds secrets), atomically.
    pub(crate) fn store(&self) -> anyhow::Result<PathBuf> {
        let path = Self::path()?;
        std::fs::create_dir_all(path.parent().expect("a parent")).context("creating the config directory")?;
        hearth_fs::write_atomic_private(&path, serde_json::to_string_pretty(self)?.as_bytes())?;
        Ok(path)
    }
}

pub(crate) struct Api {
    base: String,
    agent: ureq::Agent,
    token: Option<String>,
}

impl Api {
    pub(crate) fn new(server: &str, token: Option<String>) -> Api {
        // Creates boot a VM; exec may run a while: generous, but bounded.
        let agent = ureq::AgentBuilder::new().timeout_connect(Duration::from_secs(10)).timeout(Duration::from_secs(3700)).build();
        Api { base: server.trim_end_matches('/').to_string(), agent, token }
    }

    /// The `Authorization` header's value, when there is a credential.
    pub(crate) fn authorization(&self) -> Option<String> {
        self.token.as_ref().map(|t| format!("Bearer {t}"))
    }

    fn authed(&self, req: ureq::Request) -> ureq::Request {
        match self.authorization() {
            Some(a) => req.set("Authorization", &a),
            None => req,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    /// The WebSocket URL of `path`.
    pub(crate) fn ws_url(&self, path: &str) -> String {
        self.url(path).replacen("http://", "ws://", 1).replacen("https://", "wss://", 1)
    }

    fn send(&self, req: ureq::Request, body: Option<&dyn erased::Body>) -> anyhow::Result<ureq::Response> {
        let what = format!("{} {}", req.method(), req.url());
        let req = self.authed(req);
        let res = match body {
            Some(b) => req.set("Content-Type", "application/json").send_string(&b.json()),
            None => req.call(),
        };
        match res {
            Ok(r) => Ok(r),
            Err(ureq::Error::Status(status, r)) => {
                let v: serde_json::Value = r.into_json().unwrap_or_default();
                let msg = v["error"]["message"].as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
                let hint = if status == 401 { "; sign in with `hearth login` or pass --token / HEARTH_TOKEN" } else { "" };
                Err(anyhow!("{msg} (HTTP {status}){hint}"))
            }
            Err(e) => Err(anyhow!("{what}: {e} (is `hearth serve` running? --server / HEARTH_SERVER)")),
        }
    }

    pub(crate) fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(self.agent.get(&self.url(path)), None)?.into_json().context("reading the answer")
    }

    pub(crate) fn get_text(&self, path: &str) -> anyhow::Result<String> {
        self.send(self.agent.get(&self.url(path)), None)?.into_string().context("reading the answer")
    }

    pub(crate) fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> anyhow::Result<T> {
        self.send(self.agent.post(&self.url(path)), Some(&erased::Json(body)))?.into_json().context("reading the answer")
    }

    pub(crate) fn put_json<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> anyhow::Result<T> {
        self.send(self.agent.put(&self.url(path)), Some(&erased::Json(body)))?.into_json().context("reading the answer")
    }

    pub(crate) fn patch<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> anyhow::Result<T> {
        self.send(self.agent.request("PATCH", &self.url(path)), Some(&erased::Json(body)))?.into_json().context("reading the answer")
    }

    /// Uploads `len` bytes from `src` as the body of a PUT.
    pub(crate) fn put_stream(&self, path: &str, src: impl std::io::Read, len: u64) -> anyhow::Result<()> {
        let req = self.authed(self.agent.put(&self.url(path))).set("Content-Type", "application/octet-stream").set("Content-Length", &len.to_string());
        match req.send(src) {
            Ok(_) => Ok(()),
            Err(ureq::Error::Status(status, r)) => {
                let v: serde_json::Value = r.into_json().unwrap_or_default();
                Err(anyhow!("{} (HTTP {status})", v["error"]["message"].as_str().unwrap_or("upload refused")))
            }
            Err(e) => Err(anyhow!("PUT {}: {e}", self.url(path))),
        }
    }

    /// A GET whose body never ends on its own (a follow): no overall deadline, but the
    /// server's keep-alives must keep coming.
    pub(crate) fn follow(&self, path: &str) -> anyhow::Result<Box<dyn std::io::Read + Send + Sync>> {
        let agent = ureq::AgentBuilder::new().timeout_connect(Duration::from_secs(10)).timeout_read(Duration::from_secs(120)).build();
        Ok(self.send(agent.get(&self.url(path)), None)?.into_reader())
    }

    /// A GET whose body is read as a stream.
    pub(crate) fn get_stream(&self, path: &str) -> anyhow::Result<Box<dyn std::io::Read + Send + Sync>> {
        Ok(self.send(self.agent.get(&self.url(path)), None)?.into_reader())
    }

    pub(crate) fn delete(&self, path: &str) -> anyhow::Result<()> {
        self.send(self.agent.delete(&self.url(path)), None).map(|_| ())
    }
}

mod erased {
    /// A body serialized at send time.
    pub(crate) trait Body {
        fn json(&self) -> String;
    }

    pub(crate) struct Json<'a, B: serde::Serialize>(pub(crate) &'a B);

    impl<B: serde::Serialize> Body for Json<'_, B> {
        fn json(&self) -> String {
            serde_json::to_string(self.0).expect("request bodies serialize")
        }
    }
}
