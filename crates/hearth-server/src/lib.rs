//! `hearth serve`: the HTTP edge over the service layer (`hearth_service`).
//!
//! Layout:
//! - [`api`]: everything HTTP: the listener, axum routes and their layers, the OpenAPI
//!   document, the error mapping, the extractors, the caller's identity, the WebSocket
//!   bridge; one file per resource (workstations, console, terminals, files).
//! - [`web`]: the web UI's page and assets (embedded by `hearth_ui`), at `/`.
//!
//! Owns the HTTP surface and the server's life (reconcile, serve, stop). Every operation,
//! its policy and its state are the service's; workstation VMs run detached, so stopping the
//! server (gracefully or not) leaves them running.

pub mod api;
pub mod web;

use std::sync::Arc;

use hearth_service::Service;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{what}: {message}")]
    Setup { what: &'static str, message: String },
    #[error("listening on {addr}: {source}")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
}

fn setup(what: &'static str) -> impl Fn(String) -> ServeError {
    move |message| ServeError::Setup { what, message }
}

/// How a server behaves at its ends.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServeOptions {
    /// Also stop serving when stdin reaches EOF (the server inside the box: the outer
    /// `hearth serve` closes it to stop the server).
    pub until_stdin_eof: bool,
    /// On the way out, hibernate running workstations (the box is about to go down, and its
    /// VMs with it; or `--hibernate-on-stop`); one that cannot be is stopped and marked to be
    /// booted again at the next start.
    pub suspend_on_exit: bool,
}

/// Reconciles, boots what was suspended, then serves until SIGTERM or SIGINT (or stdin's
/// EOF). Workstations keep running after, unless `suspend_on_exit`.
pub async fn serve(svc: Service, opts: ServeOptions, ready: impl FnOnce(std::net::SocketAddr)) -> Result<(), ServeError> {
    let svc = Arc::new(svc);
    tokio::spawn(svc.clone().record_exits());
    tokio::spawn(svc.clone().watch_idle());
    let report = {
        let svc = svc.clone();
        tokio::task::spawn_blocking(move || svc.reconcile()).await.map_err(|e| setup("reconciling")(e.to_string()))?
    }
    .map_err(|e| setup("reconciling")(e.to_string()))?;
    tracing::info!(
        workstations = report.rows,
        running = report.running,
        orphans = report.orphans_removed.len(),
        networks_set_up = report.networks_set_up.len(),
        networks_removed = report.networks_removed.len(),
        "reconciled"
    );
    let tls = match &svc.config.tls {
        t if t.enabled() => Some(api::listen::tls_config(&t.cert_file, &t.key_file).map_err(|e| setup("loading the TLS certificate")(e.to_string()))?),
        _ => None,
    };
    let addr = svc.config.listen;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ServeError::Listen { addr, source })?;
    let local = listener.local_addr().map_err(|source| ServeError::Listen { addr, source })?;
    ready(local);
    // Boots take seconds each: the API answers meanwhile.
    {
        let svc = svc.clone();
        tokio::task::spawn_blocking(move || svc.resume_suspended());
    }
    let header_read_timeout = std::time::Duration::from_secs(svc.config.limits.header_read_timeout_secs);
    api::listen::serve(listener, api::router(svc.clone()), header_read_timeout, tls, {
        let svc = svc.clone();
        async move {
            shutdown_signal(opts.until_stdin_eof).await;
            svc.begin_stopping();
        }
    })
    .await;
    if opts.suspend_on_exit {
        let svc = svc.clone();
        tokio::task::spawn_blocking(move || svc.suspend_running()).await.map_err(|e| setup("suspending")(e.to_string()))?;
    }
    Ok(())
}

async fn shutdown_signal(until_stdin_eof: bool) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return std::future::pending().await;
    };
    let stdin_eof = async {
        if !until_stdin_eof {
            return std::future::pending().await;
        }
        let _ = tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink())).await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = stdin_eof => {}
    }
}
