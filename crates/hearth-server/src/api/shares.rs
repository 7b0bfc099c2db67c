//! `/api/v1/workstations/{id}/shares`: who else may see or use a workstation.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use hearth_proto::api::{ErrorBody, SetShare, Share, ShareList};

use super::error::HttpError;
use super::extract::{ApiJson, ApiPath};
use super::{Caller, SharedService};

/// Who the workstation is shared with (its owner, administrators).
#[utoipa::path(get, path = "/api/v1/workstations/{id}/shares", params(("id" = String, Path)), responses((status = 200, body = ShareList), (status = 404, body = ErrorBody)))]
pub async fn list(State(svc): State<SharedService>, Caller(who): Caller, ApiPath(id): ApiPath<String>) -> Result<Json<ShareList>, HttpError> {
    Ok(Json(ShareList { shares: svc.shares(&who, &id).await? }))
}

/// Shares the workstation with a user as `viewer` or `collaborator` (or changes their role).
#[utoipa::path(put, path = "/api/v1/workstations/{id}/shares/{user}", params(("id" = String, Path), ("user" = String, Path)), request_body = SetShare,
    responses((status = 200, body = Share), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set(
    State(svc): State<SharedService>,
    Caller(who): Caller,
    ApiPath((id, user)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<SetShare>,
) -> Result<Json<Share>, HttpError> {
    Ok(Json(svc.share(&who, &id, &user, req.role).await?))
}

/// Ends a user's share of the workstation.
#[utoipa::path(delete, path = "/api/v1/workstations/{id}/shares/{user}", params(("id" = String, Path), ("user" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn remove(State(svc): State<SharedService>, Caller(who): Caller, ApiPath((id, user)): ApiPath<(String, String)>) -> Result<StatusCode, HttpError> {
    svc.unshare(&who, &id, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}
