//! `GET /metrics`: the service's measures (hearth_service::metrics) and the HTTP edge's own,
//! in the OpenMetrics text format Prometheus scrapes (administrators; a scraper sends an
//! administrator's API token as its bearer credential).
//!
//! The edge's measures are process-wide counters: API refusals by code, terminal
//! WebSockets attached now, and the bytes they carry each way.

use std::sync::LazyLock;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use hearth_proto::api::ErrorBody;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::caller::Caller;
use super::error::HttpError;
use super::SharedService;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CodeLabel {
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DirectionLabel {
    direction: &'static str,
}

static ERRORS: LazyLock<Family<CodeLabel, Counter>> = LazyLock::new(Family::default);
static ATTACHED: LazyLock<Gauge> = LazyLock::new(Gauge::default);
static WS_BYTES: LazyLock<Family<DirectionLabel, Counter>> = LazyLock::new(Family::default);

/// An API refusal with `code` was answered.
pub(crate) fn refused(code: &str) {
    ERRORS.get_or_create(&CodeLabel { code: code.into() }).inc();
}

/// `n` bytes of terminal data went to a client (`out`) or came from one (`in`).
pub(crate) fn terminal_bytes(direction: &'static str, n: usize) {
    WS_BYTES.get_or_create(&DirectionLabel { direction }).inc_by(n as u64);
}

/// Held while a terminal WebSocket is attached.
pub(crate) struct Attached;

impl Attached {
    pub(crate) fn new() -> Attached {
        ATTACHED.inc();
        Attached
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        ATTACHED.dec();
    }
}

/// Everything hearth measures, for Prometheus (administrators).
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text"), (status = 403, body = ErrorBody)))]
pub async fn metrics(State(svc): State<SharedService>, Caller(who): Caller) -> Result<Response, HttpError> {
    let mut reg = Registry::default();
    svc.metrics(&who, &mut reg).await?;
    reg.register("hearth_api_errors", "API refusals answered, by error code", ERRORS.clone());
    reg.register("hearth_terminal_attachments", "Terminal WebSockets attached now", ATTACHED.clone());
    reg.register("hearth_terminal_bytes", "Terminal bytes carried over WebSockets, out to clients and in from them", WS_BYTES.clone());
    let mut body = String::new();
    prometheus_client::encoding::text::encode(&mut body, &reg)
        .map_err(|e| HttpError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("encoding the metrics: {e}")))?;
    Ok(([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response())
}
