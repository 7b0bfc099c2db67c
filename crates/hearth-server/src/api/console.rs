//! A workstation's serial console: the end of its log, and a live follow over Server-Sent
//! Events (the service reads the log; this turns what it reads into events).

use std::convert::Infallible;

use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use hearth_proto::api::{ConsoleEnd, ConsoleOutput, ErrorBody};
use hearth_service::console::ConsoleItem;
use serde::Deserialize;

use super::error::HttpError;
use super::extract::{ApiPath, ApiQuery};
use super::{Caller, SharedService};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ConsoleQuery {
    /// Bytes from the end of the log (default 65536, at most 1 MiB).
    pub tail_bytes: Option<u64>,
}

/// The end of the serial console log.
#[utoipa::path(get, path = "/api/v1/workstations/{id}/console", params(("id" = String, Path), ConsoleQuery),
    responses((status = 200, content_type = "text/plain", body = String), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn console(
    State(svc): State<SharedService>,
    Caller(who): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ConsoleQuery>,
) -> Result<impl IntoResponse, HttpError> {
    let text = svc.console_tail(&who, &id, q.tail_bytes).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text))
}

/// Follows the serial console: the last `tail_bytes` first, then what the guest prints, as
/// Server-Sent Events: `output` events carry `{"text": …}`; an `end` event
/// (`{"reason": "deleted"}` or `{"reason": "server_stopping"}`) closes the stream.
#[utoipa::path(get, path = "/api/v1/workstations/{id}/console/stream", params(("id" = String, Path), ConsoleQuery),
    responses((status = 200, content_type = "text/event-stream", body = ConsoleOutput), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn stream(
    State(svc): State<SharedService>,
    Caller(who): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ConsoleQuery>,
) -> Result<impl IntoResponse, HttpError> {
    let follow = svc.follow_console(&who, &id, q.tail_bytes).await?;
    let events = futures_util::stream::unfold(follow, |mut f| async move {
        let event = match f.next().await? {
            ConsoleItem::Output(text) => Event::default().event("output").data(serde_json::to_string(&ConsoleOutput { text }).expect("console output serializes")),
            // The end carries data: an event without any is never dispatched by browsers' EventSource.
            ConsoleItem::End(reason) => Event::default().event("end").data(serde_json::to_string(&ConsoleEnd { reason }).expect("console ends serialize")),
        };
        Some((Ok::<_, Infallible>(event), f))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
