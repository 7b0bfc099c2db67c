//! Every failure the API reports: an HTTP status and `{"error": {code, message, field?}}`.
//! The one place a service error becomes a status ([`status_of`]).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hearth_proto::api::{ErrorBody, ErrorDetail};
use hearth_service::Error;

/// An error on its way to the client.
#[derive(Debug)]
pub struct HttpError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// Sent as `Retry-After` (a rate-limited sign-in).
    pub retry_after_secs: Option<u64>,
}

/// The HTTP status of each service error.
pub fn status_of(e: &Error) -> StatusCode {
    match e {
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::Conflict(_) => StatusCode::CONFLICT,
        Error::Invalid { .. } | Error::BadRequest(_) => StatusCode::BAD_REQUEST,
        Error::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        Error::Forbidden(_) | Error::NotAllowed(_) | Error::QuotaExceeded { .. } => StatusCode::FORBIDDEN,
        Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<Error> for HttpError {
    fn from(e: Error) -> Self {
        let retry_after_secs = match e {
            Error::RateLimited { retry_after_secs } => Some(retry_after_secs),
            _ => None,
        };
        HttpError { status: status_of(&e), code: e.code(), field: e.field().map(str::to_string), message: e.to_string(), retry_after_secs }
    }
}

impl HttpError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), field: None, retry_after_secs: None }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// A request part (a query or path parameter) out of its limits.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Error::invalid(field, message).into()
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Error::NotFound(what.into()).into()
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Error::TooLarge(message.into()).into()
    }

    /// The same status, with a more specific code (a 403 that is a CSRF refusal, say).
    pub fn with_code(self, code: &'static str) -> Self {
        Self { code, ..self }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        super::metrics::refused(self.code);
        if self.status.is_server_error() {
            tracing::warn!(code = self.code, "{}", self.message);
        }
        let body = ErrorBody { error: ErrorDetail { code: self.code.into(), message: self.message, field: self.field } };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            resp.headers_mut().insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer realm=\"hearth\""));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_service::Unavailable;

    #[test]
    fn each_error_has_its_status_code_and_field() {
        let e = HttpError::from(Error::invalid("vcpu_count", "must be 1-8"));
        assert_eq!((e.status, e.code, e.field.as_deref(), e.message.as_str()), (StatusCode::BAD_REQUEST, "invalid_field", Some("vcpu_count"), "vcpu_count: must be 1-8"));
        for (err, status, code) in [
            (Error::NotFound("x".into()), 404, "not_found"),
            (Error::Conflict("x".into()), 409, "conflict"),
            (Error::BadRequest("x".into()), 400, "bad_request"),
            (Error::Unavailable { what: Unavailable::Memory, message: "x".into() }, 503, "over_capacity"),
            (Error::Unavailable { what: Unavailable::Addresses, message: "x".into() }, 503, "address_range_exhausted"),
            (Error::Unavailable { what: Unavailable::Followers, message: "x".into() }, 503, "too_many_followers"),
            (Error::Unavailable { what: Unavailable::Egress, message: "x".into() }, 503, "egress_unavailable"),
            (Error::TooLarge("x".into()), 413, "payload_too_large"),
            (Error::Forbidden("x".into()), 403, "forbidden"),
            (Error::Unauthenticated("x".into()), 401, "unauthenticated"),
            (Error::RateLimited { retry_after_secs: 9 }, 429, "rate_limited"),
            (Error::NotAllowed("x".into()), 403, "not_on_allowlist"),
            (Error::Unavailable { what: Unavailable::Hypha, message: "x".into() }, 503, "hypha_unavailable"),
            (Error::Internal("x".into()), 500, "internal"),
        ] {
            let e = HttpError::from(err);
            assert_eq!((e.status.as_u16(), e.code, e.field), (status, code, None));
        }
    }
}
