//! `/api/v1/audit`: who did what, when (administrators: everyone's; users: their own).

use axum::extract::State;
use axum::Json;
use hearth_proto::api::{AuditList, ErrorBody};
use serde::Deserialize;

use super::error::HttpError;
use super::extract::ApiQuery;
use super::{Caller, SharedService};

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only this user's entries (users may ask only for their own).
    user: Option<String>,
    /// Only entries about this workstation, token or user.
    target: Option<String>,
    /// How many, newest first (default 100).
    limit: Option<u32>,
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/api/v1/audit", params(AuditQuery), responses((status = 200, body = AuditList), (status = 403, body = ErrorBody)))]
pub async fn read(State(svc): State<SharedService>, Caller(who): Caller, ApiQuery(q): ApiQuery<AuditQuery>) -> Result<Json<AuditList>, HttpError> {
    let query = hearth_service::audit::Query { user: q.user, target: q.target, limit: q.limit };
    Ok(Json(AuditList { entries: svc.audit_log(&who, query).await? }))
}
