//! The extractors of request parts: a JSON body, a query string, path parameters. What is
//! not what was asked for is a 400 naming the field at fault (`bandwidth.rx_mbps`,
//! `tail_bytes`), in the API's error shape, never axum's plain-text rejection.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::HttpError;

/// A query string, parsed.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de).map(ApiQuery).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." || path.is_empty() {
                HttpError::bad_request(format!("query string: {inner}"))
            } else {
                HttpError::invalid(&path, inner.to_string())
            }
        })
    }
}

/// Path parameters, parsed.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state).await.map(|p| ApiPath(p.0)).map_err(|e| HttpError::bad_request(e.body_text()))
    }
}

pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
        if !json {
            return Err(HttpError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "bad_request", "expected a body with Content-Type: application/json"));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                HttpError::too_large(e.body_text())
            } else {
                HttpError::bad_request(e.body_text())
            }
        })?;
        parse(&bytes).map(ApiJson)
    }
}

/// Parses a body, naming the field a type or range error is at.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, HttpError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            HttpError::bad_request(format!("malformed JSON: {inner}"))
        } else if path == "." || path.is_empty() {
            HttpError::bad_request(format!("{inner}"))
        } else {
            HttpError::invalid(&path, inner.to_string())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_proto::api::CreateWorkstation;

    #[test]
    fn errors_name_the_field() {
        let e = parse::<CreateWorkstation>(br#"{"name":"a","bandwidth":{"rx_mbps":-1,"tx_mbps":1}}"#).err().unwrap();
        assert_eq!(e.field.as_deref(), Some("bandwidth.rx_mbps"));
        let e = parse::<CreateWorkstation>(br#"{"name":"a","vcpu_count":"two"}"#).err().unwrap();
        assert_eq!(e.field.as_deref(), Some("vcpu_count"));
        let e = parse::<CreateWorkstation>(br#"{"name":"a","#).err().unwrap();
        assert!(e.message.contains("malformed JSON"), "{}", e.message);
        let e = parse::<CreateWorkstation>(br#"{"name":"a","colour":"red"}"#).err().unwrap();
        assert!(e.message.contains("colour"), "{}", e.message);
        assert!(parse::<CreateWorkstation>(br#"{"name":"a"}"#).is_ok());
    }
}
