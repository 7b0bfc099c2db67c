//! Accepting connections and serving HTTP/1.1 on them (WebSocket upgrades included), with
//! the bounds `axum::serve` leaves out: a header-read timeout (a client must finish a
//! request's headers within it, and a kept-alive connection with no next request is closed
//! after it: hyper starts the timer whenever it waits for a request head), TCP_NODELAY, TLS
//! when configured (its handshake bounded by the same timeout), and a graceful stop that lets
//! requests in flight finish.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::rustls;
use tower::ServiceExt;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Pem { path: String, message: String },
    #[error("the certificate and key: {0}")]
    Config(#[from] rustls::Error),
}

/// The TLS settings of a server with `cert_file` and `key_file` (PEM).
pub fn tls_config(cert_file: &str, key_file: &str) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |path: &str| std::fs::read(path).map_err(|source| TlsError::Read { path: path.into(), source });
    let pem = |path: &str, e: rustls::pki_types::pem::Error| TlsError::Pem { path: path.into(), message: e.to_string() };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(cert_file)?).collect::<Result<_, _>>().map_err(|e| pem(cert_file, e))?;
    if certs.is_empty() {
        return Err(TlsError::Pem { path: cert_file.into(), message: "no certificate in it".into() });
    }
    let key = PrivateKeyDer::from_pem_slice(&read(key_file)?).map_err(|e| pem(key_file, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?.with_no_client_auth().with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `router` on `listener` (over TLS with `tls`) until `shutdown` resolves, then waits
/// for the connections' requests in flight to finish (long-lived streams end on the
/// service's own stop signal).
pub async fn serve(listener: TcpListener, router: axum::Router, header_read_timeout: Duration, tls: Option<Arc<rustls::ServerConfig>>, shutdown: impl Future<Output = ()>) {
    // Each connection holds a receiver; all dropped: every connection is done.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, say: wait a little rather than spin.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Keystroke echoes are small writes: without TCP_NODELAY the second of two (an echo,
        // then the prompt) waits for the first one's delayed ACK, ~40 ms.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "setting TCP_NODELAY");
        }
        // The peer's address goes with each request (sign-in attempts are limited per address).
        let service = TowerToHyperService::new(router.clone().map_request(move |req: axum::http::Request<hyper::body::Incoming>| {
            let mut req = req.map(axum::body::Body::new);
            req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            req
        }));
        let stop = stop_rx.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                None => connection(tcp, service, header_read_timeout, stop, peer).await,
                Some(acceptor) => match tokio::time::timeout(header_read_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => connection(tls, service, header_read_timeout, stop, peer).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(stop_rx);
    stop_tx.closed().await;
}

/// Serves one connection until it ends, or gracefully once `stop` is set.
async fn connection<I, S>(io: I, service: S, header_read_timeout: Duration, mut stop: tokio::sync::watch::Receiver<bool>, peer: std::net::SocketAddr)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<axum::http::Request<hyper::body::Incoming>, Response = axum::response::Response> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
    let mut conn = std::pin::pin!(builder.serve_connection(TokioIo::new(io), service).with_upgrades());
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(%peer, error = %e, "connection ended");
                }
                break;
            }
            _ = stop.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
        }
    }
    drop(stop);
}
