//! A control-protocol server on a unix socket in a temporary directory, as the agent runs it.

// Each test binary uses a different part of this.
#![allow(dead_code)]

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hearth_exec::server::{serve_incoming, ConnLimit, ServerConfig};
use hearth_exec::ExecClient;

pub(crate) struct Server {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) path: PathBuf,
}

pub(crate) fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ctl.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let cfg = Arc::new(ServerConfig {
        token: None,
        env: vec![("PATH".into(), "/usr/bin:/bin".into()), ("PS1".into(), "$ ".into())],
        on_shutdown: Box::new(|| {}),
        uptime_ms: || 1,
        capabilities: vec![],
        allow_machine_settings: false,
        ptys: Default::default(),
    });
    std::thread::spawn(move || serve_incoming(listener.incoming(), cfg, ConnLimit::new(64)));
    Server { dir, path }
}

impl Server {
    pub(crate) fn client(&self) -> ExecClient<UnixStream> {
        ExecClient::hello(self.raw(), None, Duration::from_secs(5)).unwrap()
    }

    pub(crate) fn raw(&self) -> UnixStream {
        UnixStream::connect(&self.path).unwrap()
    }
}
