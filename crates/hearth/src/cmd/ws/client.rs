//! The CLI's HTTP client for the REST API: typed calls, and the server's JSON errors turned
//! into one clear line.

use std::time::Duration;

use anyhow::{anyhow, Context};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub(crate) struct Api {
    base: String,
    agent: ureq::Agent,
}

impl Api {
    pub(crate) fn new(server: &str) -> Api {
        // Creates boot a VM; exec may run a while: generous, but bounded.
        let agent = ureq::AgentBuilder::new().timeout_connect(Duration::from_secs(10)).timeout(Duration::from_secs(3700)).build();
        Api { base: server.trim_end_matches('/').to_string(), agent }
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
        let res = match body {
            Some(b) => req.set("Content-Type", "application/json").send_string(&b.json()),
            None => req.call(),
        };
        match res {
            Ok(r) => Ok(r),
            Err(ureq::Error::Status(status, r)) => {
                let v: serde_json::Value = r.into_json().unwrap_or_default();
                let msg = v["error"]["message"].as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
                Err(anyhow!("{msg} (HTTP {status})"))
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

    /// Uploads `len` bytes from `src` as the body of a PUT.
    pub(crate) fn put_stream(&self, path: &str, src: impl std::io::Read, len: u64) -> anyhow::Result<()> {
        let req = self.agent.put(&self.url(path)).set("Content-Type", "application/octet-stream").set("Content-Length", &len.to_string());
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
