//! `/api/v1/users`: accounts (administrators manage them; users read and change their own),
//! their quotas, and the email allowlist; `/api/v1/host`: the host's budgets in use.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use hearth_proto::api::{AllowList, CreateUser, ErrorBody, HostStatus, Quota, QuotaReport, SetAllowList, UpdateUser, User, UserList};

use super::error::HttpError;
use super::extract::{ApiJson, ApiPath};
use super::{Caller, SharedService};

/// Every account (administrators).
#[utoipa::path(get, path = "/api/v1/users", responses((status = 200, body = UserList), (status = 403, body = ErrorBody)))]
pub async fn list(State(svc): State<SharedService>, Caller(who): Caller) -> Result<Json<UserList>, HttpError> {
    Ok(Json(UserList { users: svc.users(&who).await? }))
}

/// Makes an account (administrators).
#[utoipa::path(post, path = "/api/v1/users", request_body = CreateUser,
    responses((status = 201, body = User), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(State(svc): State<SharedService>, Caller(who): Caller, ApiJson(req): ApiJson<CreateUser>) -> Result<(StatusCode, Json<User>), HttpError> {
    Ok((StatusCode::CREATED, Json(svc.create_user(&who, req).await?)))
}

/// One account: the caller's own, or any for an administrator.
#[utoipa::path(get, path = "/api/v1/users/{id}", params(("id" = String, Path)), responses((status = 200, body = User), (status = 404, body = ErrorBody)))]
pub async fn get(State(svc): State<SharedService>, Caller(who): Caller, ApiPath(id): ApiPath<String>) -> Result<Json<User>, HttpError> {
    Ok(Json(svc.user(&who, &id).await?))
}

/// Changes an account: users their own password (with `current_password`); administrators
/// anything.
#[utoipa::path(patch, path = "/api/v1/users/{id}", params(("id" = String, Path)), request_body = UpdateUser,
    responses((status = 200, body = User), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn update(State(svc): State<SharedService>, Caller(who): Caller, ApiPath(id): ApiPath<String>, ApiJson(req): ApiJson<UpdateUser>) -> Result<Json<User>, HttpError> {
    Ok(Json(svc.update_user(&who, &id, req).await?))
}

/// Removes an account and its credentials (administrators); refused while it owns
/// workstations.
#[utoipa::path(delete, path = "/api/v1/users/{id}", params(("id" = String, Path)), responses((status = 204), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete(State(svc): State<SharedService>, Caller(who): Caller, ApiPath(id): ApiPath<String>) -> Result<StatusCode, HttpError> {
    svc.delete_user(&who, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A user's quota (their role's limits and their own) and what they hold: their own, or
/// anyone's for an administrator.
#[utoipa::path(get, path = "/api/v1/users/{id}/quota", params(("id" = String, Path)), responses((status = 200, body = QuotaReport), (status = 404, body = ErrorBody)))]
pub async fn quota(State(svc): State<SharedService>, Caller(who): Caller, ApiPath(id): ApiPath<String>) -> Result<Json<QuotaReport>, HttpError> {
    Ok(Json(svc.quota(&who, &id).await?))
}

/// Sets a user's own limits (administrators): each field set replaces their role's (0:
/// unlimited); null takes the role's.
#[utoipa::path(put, path = "/api/v1/users/{id}/quota", params(("id" = String, Path)), request_body = Quota,
    responses((status = 200, body = QuotaReport), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_quota(State(svc): State<SharedService>, Caller(who): Caller, ApiPath(id): ApiPath<String>, ApiJson(q): ApiJson<Quota>) -> Result<Json<QuotaReport>, HttpError> {
    Ok(Json(svc.set_quota(&who, &id, q).await?))
}

/// The email allowlist for Hypha sign-ins (administrators): the configuration's entries and
/// those kept here.
#[utoipa::path(get, path = "/api/v1/allowlist", responses((status = 200, body = AllowList), (status = 403, body = ErrorBody)))]
pub async fn allowlist(State(svc): State<SharedService>, Caller(who): Caller) -> Result<Json<AllowList>, HttpError> {
    Ok(Json(svc.allowlist(&who).await?))
}

/// Replaces the allowlist's kept entries (administrators).
#[utoipa::path(put, path = "/api/v1/allowlist", request_body = SetAllowList, responses((status = 200, body = AllowList), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn set_allowlist(State(svc): State<SharedService>, Caller(who): Caller, ApiJson(req): ApiJson<SetAllowList>) -> Result<Json<AllowList>, HttpError> {
    Ok(Json(svc.set_allowlist(&who, req.managed).await?))
}

/// This host's workstation budgets, what is held of them, and the workstations by state
/// (administrators).
#[utoipa::path(get, path = "/api/v1/host", responses((status = 200, body = HostStatus), (status = 403, body = ErrorBody)))]
pub async fn host(State(svc): State<SharedService>, Caller(who): Caller) -> Result<Json<HostStatus>, HttpError> {
    Ok(Json(svc.host(&who).await?))
}
