//! The web UI over HTTP: the page at `/` and at each path the page's script shows a view for
//! (`/w/...`, `/admin`), its content-hashed assets under `/assets/`, gzipped for clients that
//! take it. Everything here is public (the page asks the API who is signed in); the API's
//! layers (Host guard, request ids) wrap these routes too. Must not hold any logic of the UI.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hearth_ui::Asset;

use crate::api::error::HttpError;

/// What the page may load and where it may connect: only this server (WebSockets to it
/// included); styles inline because xterm.js sets them on its elements.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'";

/// The UI's routes (merged into the API's router, under its layers).
pub fn routes<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    axum::Router::new()
        .route("/", get(page))
        .route("/admin", get(page))
        .route("/w/{*view}", get(page))
        .route("/favicon.svg", get(|h: HeaderMap| async move { serve(hearth_ui::asset("/favicon.svg").expect("the UI has its icon"), &h) }))
        .route("/assets/{file}", get(asset))
}

async fn page(h: HeaderMap) -> Response {
    serve(hearth_ui::page(), &h)
}

async fn asset(axum::extract::Path(file): axum::extract::Path<String>, h: HeaderMap) -> Response {
    match hearth_ui::asset(&format!("/assets/{file}")) {
        Some(a) => serve(a, &h),
        None => HttpError::not_found("no such asset (the page may be older than this server: reload it)").into_response(),
    }
}

fn serve(a: &'static Asset, req: &HeaderMap) -> Response {
    let gzip = req.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).any(|v| v.split(',').any(|e| e.trim().split(';').next() == Some("gzip")));
    let cache = if a.immutable() { "public, max-age=31536000, immutable" } else { "no-cache" };
    let mut resp = (StatusCode::OK, if gzip { a.gzip } else { a.body }).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(a.content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if a.path == "/" {
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    resp
}
