//! `/api/v1/tokens`: the caller's API tokens.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use hearth_proto::api::{CreateToken, ErrorBody, NewToken, TokenList};

use super::error::HttpError;
use super::extract::{ApiJson, ApiPath};
use super::{Caller, SharedService};

/// Makes an API token for the caller; its secret is in this answer only.
#[utoipa::path(post, path = "/api/v1/tokens", request_body = CreateToken,
    responses((status = 201, body = NewToken), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(State(svc): State<SharedService>, Caller(who): Caller, ApiJson(req): ApiJson<CreateToken>) -> Result<(StatusCode, Json<NewToken>), HttpError> {
    Ok((StatusCode::CREATED, Json(svc.create_token(&who, req).await?)))
}

/// The caller's API tokens (without their secrets).
#[utoipa::path(get, path = "/api/v1/tokens", responses((status = 200, body = TokenList)))]
pub async fn list(State(svc): State<SharedService>, Caller(who): Caller) -> Result<Json<TokenList>, HttpError> {
    Ok(Json(TokenList { tokens: svc.tokens(&who).await? }))
}

/// Revokes a token (the caller's own; administrators: anyone's).
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", params(("id" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn revoke(State(svc): State<SharedService>, Caller(who): Caller, ApiPath(id): ApiPath<String>) -> Result<StatusCode, HttpError> {
    svc.revoke_token(&who, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
