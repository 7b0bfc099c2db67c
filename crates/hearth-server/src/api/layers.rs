//! What every request goes through before its handler: an id and a tracing span, a bound
//! on requests in flight, and a deadline for those without bounds of their own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::error::HttpError;

/// The header a request's id travels in, both ways.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A client's own request id is kept when it is at most this long, of `[A-Za-z0-9._-]`.
const MAX_CLIENT_ID: usize = 64;

/// Ids for requests that come without one: unique in this process, not predictable from
/// one another (they show in logs; they are not secrets).
fn new_request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    use std::hash::{BuildHasher, Hasher};
    // One random key per process (std's hasher seed), a counter hashed under it.
    static KEY: std::sync::OnceLock<std::collections::hash_map::RandomState> = std::sync::OnceLock::new();
    let mut h = KEY.get_or_init(Default::default).build_hasher();
    h.write_u64(NEXT.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}", h.finish())
}

/// Gives the request an id (the client's, if it sent a usable one), runs it in a span that
/// carries the id, method and path (so every log line of it says which request), and
/// returns the id in the answer.
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= MAX_CLIENT_ID && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
    let id = given.map_or_else(new_request_id, str::to_string);
    let value = HeaderValue::from_str(&id).expect("request ids are header-safe");
    req.headers_mut().insert(REQUEST_ID, value.clone());
    let span = tracing::info_span!("request", id = %id, method = %req.method(), path = %req.uri().path());
    let started = Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    span.in_scope(|| tracing::debug!(status = resp.status().as_u16(), ms = started.elapsed().as_secs_f64() * 1e3, "answered"));
    resp.headers_mut().insert(REQUEST_ID, value);
    resp
}

/// Requests being answered now, bounded: one over the bound is refused at once.
#[derive(Clone)]
pub struct InFlight(Arc<tokio::sync::Semaphore>);

impl InFlight {
    pub fn new(max: usize) -> InFlight {
        InFlight(Arc::new(tokio::sync::Semaphore::new(max)))
    }
}

pub async fn limit_in_flight(limit: InFlight, req: Request, next: Next) -> Response {
    let Ok(_permit) = limit.0.try_acquire() else {
        let mut resp = HttpError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "the server is answering as many requests as it may; try again shortly").into_response();
        resp.headers_mut().insert(axum::http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        return resp;
    };
    next.run(req).await
}

/// Whether a request has a bound of its own and so no deadline here: exec (its timeout),
/// file transfers (their size), streams (terminal WebSockets, console follows).
pub(crate) fn bounds_itself(path: &str) -> bool {
    ["/exec", "/files", "/ws", "/console/stream"].iter().any(|end| path.ends_with(end))
}

pub async fn deadline(timeout: Duration, req: Request, next: Next) -> Response {
    if bounds_itself(req.uri().path()) {
        return next.run(req).await;
    }
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(resp) => resp,
        // The operation itself goes on to its own end (a boot cannot be cut short halfway);
        // its outcome shows in the workstation's state and events.
        Err(_) => {
            HttpError::new(StatusCode::SERVICE_UNAVAILABLE, "timed_out", format!("no answer within {} s; the operation may still complete", timeout.as_secs())).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_differ_and_streams_are_exempt_from_the_deadline() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_request_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|i| i.len() == 16));
        for p in ["/api/v1/workstations/w1/exec", "/api/v1/workstations/w1/files", "/api/v1/workstations/w1/terminals/t1/ws", "/api/v1/workstations/w1/console/stream"] {
            assert!(bounds_itself(p), "{p}");
        }
        for p in ["/api/v1/workstations", "/api/v1/workstations/w1/restart", "/api/v1/workstations/w1/console"] {
            assert!(!bounds_itself(p), "{p}");
        }
    }
}

/// Where requests may come from: the names the server answers to and the origins its pages
/// are served from. Built once from `[auth]`.
#[derive(Clone, Debug)]
pub struct Guard {
    /// Host names allowed in `Host` besides IP addresses and `localhost` (lowercase).
    hosts: Arc<Vec<String>>,
    /// `public_url`'s origin (`https://hearth.example.org`), when configured.
    public_origin: Option<Arc<str>>,
}

impl Guard {
    pub fn new(auth: &hearth_service::config::Auth) -> Guard {
        let mut hosts: Vec<String> = auth.allowed_hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
        let public = auth.public_origin();
        if let Some((_, authority)) = &public {
            hosts.push(host_name(authority).to_string());
        }
        Guard { hosts: Arc::new(hosts), public_origin: public.map(|(o, _)| o.into()) }
    }

    /// Whether a request naming `host` in its `Host` header is for this server. IP addresses
    /// and `localhost` always are: DNS rebinding needs a name the attacker controls.
    fn host_allowed(&self, host: &str) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        let ip = name.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>().is_ok();
        ip || name == "localhost" || name.ends_with(".localhost") || self.hosts.contains(&name)
    }

    /// Whether a page at `origin` may drive this server on a request to `host`: it is the
    /// server's own origin (the same host and port), or `public_url`'s.
    fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = origin.to_ascii_lowercase();
        if self.public_origin.as_deref() == Some(origin.as_str()) {
            return true;
        }
        let Some((scheme, authority)) = origin.split_once("://") else { return false };
        (scheme == "http" || scheme == "https") && host.is_some_and(|h| h.eq_ignore_ascii_case(authority))
    }
}

/// The name part of a `Host` value (`[::1]:8080` → `[::1]`, `example.org:80` → `example.org`).
fn host_name(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && (!name.contains(':') || name.ends_with(']')) => name,
        _ => host,
    }
}

/// Refuses requests for a name the server does not answer to (403 `host_not_allowed`: DNS
/// rebinding), and WebSocket upgrades and requests that change something from a page of
/// another origin (403 `origin_not_allowed`: cross-site WebSocket hijacking and request
/// forgery). Requests without `Origin` (not from a browser's page) pass on to sign-in.
pub async fn guard(guard: Guard, req: Request, next: Next) -> Response {
    use axum::http::header;
    let h = req.headers();
    let host = h.get(header::HOST).map(|v| v.to_str().unwrap_or(""));
    if let Some(host) = host {
        if !guard.host_allowed(host) {
            let msg = "this server does not answer to that host name; add it to auth.allowed_hosts or auth.public_url";
            return HttpError::new(StatusCode::FORBIDDEN, "host_not_allowed", msg).into_response();
        }
    }
    let upgrade = h.get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let changes = super::caller::changes_something(req.method());
    if upgrade || changes {
        if let Some(origin) = h.get(header::ORIGIN) {
            if !guard.origin_allowed(origin.to_str().unwrap_or("null"), host) {
                let msg = "requests from a page of another origin are refused";
                return HttpError::new(StatusCode::FORBIDDEN, "origin_not_allowed", msg).into_response();
            }
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod guard_tests {
    use super::*;

    #[test]
    fn hosts_and_origins() {
        let auth = hearth_service::config::Auth { public_url: "https://Hearth.Example.org/".into(), allowed_hosts: vec!["box.lan".into()], ..Default::default() };
        let g = Guard::new(&auth);
        for ok in ["127.0.0.1:8080", "localhost", "LOCALHOST:1", "[::1]:8080", "10.1.2.3", "box.lan:8080", "hearth.example.org", "a.localhost:80"] {
            assert!(g.host_allowed(ok), "{ok}");
        }
        for bad in ["evil.example", "evil.example:8080", "127.0.0.1.evil.example", "", "box.lan.evil"] {
            assert!(!g.host_allowed(bad), "{bad}");
        }
        assert!(g.origin_allowed("http://127.0.0.1:8080", Some("127.0.0.1:8080")));
        assert!(g.origin_allowed("https://hearth.example.org", Some("10.0.0.1:8080")), "the public origin behind a proxy");
        for (origin, host) in [("http://127.0.0.1:9999", "127.0.0.1:8080"), ("http://evil.example", "127.0.0.1:8080"), ("null", "127.0.0.1:8080"), ("file://", "")] {
            assert!(!g.origin_allowed(origin, Some(host)), "{origin} on {host}");
        }
        assert!(!g.origin_allowed("http://127.0.0.1:8080", None));
    }
}
