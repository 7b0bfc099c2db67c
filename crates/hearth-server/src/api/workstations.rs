//! `/api/v1/workstations`: create, list (and follow the list), get, delete, the lifecycle actions, exec and events.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::Json;
use hearth_proto::api::{ConsoleEnd, ConsoleEndReason, CreateWorkstation, ErrorBody, EventList, ExecRequest, ExecResult, Workstation, WorkstationList};
use hearth_service::workstations::{Action, ListItem};
use serde::Deserialize;

use super::error::HttpError;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::{Caller, SharedService};

/// Creates a workstation and, unless `start` is false, boots it.
#[utoipa::path(post, path = "/api/v1/workstations", request_body = CreateWorkstation,
    responses((status = 201, body = Workstation), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn create(State(svc): State<SharedService>, Caller(who): Caller, ApiJson(req): ApiJson<CreateWorkstation>) -> Result<(StatusCode, Json<Workstation>), HttpError> {
    Ok((StatusCode::CREATED, Json(svc.create(&who, req).await?)))
}

/// Lists workstations.
#[utoipa::path(get, path = "/api/v1/workstations", responses((status = 200, body = WorkstationList)))]
pub async fn list(State(svc): State<SharedService>, Caller(who): Caller) -> Result<Json<WorkstationList>, HttpError> {
    Ok(Json(WorkstationList { workstations: svc.list(&who).await? }))
}

/// Follows the list: Server-Sent Events, a `workstations` event with the whole list (as
/// `GET /api/v1/workstations` answers) at once and after every change to it, then an `end`
/// event (`{"reason": "server_stopping"}`) when the server stops.
#[utoipa::path(get, path = "/api/v1/workstations/stream",
    responses((status = 200, content_type = "text/event-stream", body = WorkstationList), (status = 503, body = ErrorBody)))]
pub async fn stream(State(svc): State<SharedService>, Caller(who): Caller) -> Result<impl IntoResponse, HttpError> {
    let follow = svc.follow_list(&who).await?;
    let events = futures_util::stream::unfold(follow, |mut f| async move {
        let event = match f.next().await? {
            ListItem::Workstations(workstations) => Event::default().event("workstations").data(serde_json::to_string(&WorkstationList { workstations }).expect("lists serialize")),
            ListItem::Stopping => Event::default().event("end").data(serde_json::to_string(&ConsoleEnd { reason: ConsoleEndReason::ServerStopping }).expect("ends serialize")),
        };
        Some((Ok::<_, std::convert::Infallible>(event), f))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// One workstation.
#[utoipa::path(get, path = "/api/v1/workstations/{id}", params(("id" = String, Path)), responses((status = 200, body = Workstation), (status = 404, body = ErrorBody)))]
pub async fn get(State(svc): State<SharedService>, Caller(who): Caller, ApiPath(id): ApiPath<String>) -> Result<Json<Workstation>, HttpError> {
    Ok(Json(svc.get(&who, &id).await?))
}

/// Deletes a workstation: its VM, disk, logs, network and record.
#[utoipa::path(delete, path = "/api/v1/workstations/{id}", params(("id" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(State(svc): State<SharedService>, Caller(who): Caller, ApiPath(id): ApiPath<String>) -> Result<StatusCode, HttpError> {
    svc.delete(&who, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A lifecycle action: `start`, `stop`, `restart`, `pause`, `resume` or `hibernate` (start
/// or resume of a hibernated workstation wakes it where it was).
#[utoipa::path(post, path = "/api/v1/workstations/{id}/{action}",
    params(("id" = String, Path), ("action" = String, Path, description = "start, stop, restart, pause, resume or hibernate")),
    responses((status = 200, body = Workstation), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn action(State(svc): State<SharedService>, Caller(who): Caller, ApiPath((id, action)): ApiPath<(String, String)>) -> Result<Json<Workstation>, HttpError> {
    let action: Action = action.parse()?;
    Ok(Json(svc.act(&who, &id, action).await?))
}

/// Runs a command to its end and returns its output.
#[utoipa::path(post, path = "/api/v1/workstations/{id}/exec", params(("id" = String, Path)), request_body = ExecRequest,
    responses((status = 200, body = ExecResult), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn exec(State(svc): State<SharedService>, Caller(who): Caller, ApiPath(id): ApiPath<String>, ApiJson(req): ApiJson<ExecRequest>) -> Result<Json<ExecResult>, HttpError> {
    Ok(Json(svc.exec(&who, &id, req).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// The newest this many (default 100, at most 1000).
    pub limit: Option<i64>,
}

/// What happened to a workstation, oldest first.
#[utoipa::path(get, path = "/api/v1/workstations/{id}/events", params(("id" = String, Path), EventsQuery),
    responses((status = 200, body = EventList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn events(State(svc): State<SharedService>, Caller(who): Caller, ApiPath(id): ApiPath<String>, ApiQuery(q): ApiQuery<EventsQuery>) -> Result<Json<EventList>, HttpError> {
    Ok(Json(EventList { events: svc.events(&who, &id, q.limit).await? }))
}
