//! Who a request comes from, as the service's [`Principal`]. The one place a request's
//! identity is decided: today every request is the server's one local owner (the server
//! listens on loopback); sign-in replaces this extractor's body, not the handlers.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use hearth_service::Principal;

use super::error::HttpError;

/// The caller of a request.
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = HttpError;

    async fn from_request_parts(_: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Caller(Principal::local_owner()))
    }
}
