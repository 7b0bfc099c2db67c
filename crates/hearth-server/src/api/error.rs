//! Every failure the API reports: an HTTP status and `{"error": {code, message, field?}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hearth_proto::api::{ErrorBody, ErrorDetail};
use hearth_runtime::RuntimeError;

use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), field: None }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// A field out of its limits.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self { status: StatusCode::BAD_REQUEST, code: "invalid_field", message: format!("{field}: {message}"), field: Some(field.into()) }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(code = self.code, "{}", self.message);
        }
        let body = ErrorBody { error: ErrorDetail { code: self.code.into(), message: self.message, field: self.field } };
        (self.status, Json(body)).into_response()
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::Invalid { field, message } => ApiError::invalid(field, message),
            RuntimeError::NotFound(id) => ApiError::not_found(format!("no workstation `{id}`")),
            e @ (RuntimeError::Exists(_) | RuntimeError::Conflict { .. }) => ApiError::conflict(e.to_string()),
            e => ApiError::internal(format!("{e:#}: {}", source_chain(&e))),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Alloc(a @ hearth_net::AllocError::Exhausted { .. }) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "address_range_exhausted", format!("{a}; delete a workstation or configure a larger network.range"))
            }
            e => ApiError::internal(e.to_string()),
        }
    }
}

/// The causes below an error, joined (boot failures carry the console tail there).
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    parts.join(": ")
}
