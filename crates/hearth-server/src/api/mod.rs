//! The HTTP API, v1: an edge over the service layer. Each handler parses the request, calls
//! one operation of `hearth_service::Service` as the caller ([`Caller`]) and maps the result
//! (errors in `error.rs`, the one place that knows statuses). Routes and the OpenAPI document
//! are built from the same handler list (utoipa-axum), so the document cannot drift from what
//! is served.

pub mod audit;
pub mod auth;
pub mod bridge;
pub mod caller;
pub mod console;
pub mod contract;
pub mod error;
pub mod extract;
pub mod files;
pub mod layers;
pub mod listen;
pub mod metrics;
pub mod shares;
pub mod terminals;
#[cfg(test)]
mod tests;
pub mod tokens;
pub mod users;
pub mod workstations;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::Json;
use hearth_proto::api::Health;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use caller::Caller;
use error::HttpError;

/// What every handler is given: the service.
pub type SharedService = std::sync::Arc<hearth_service::Service>;

#[derive(OpenApi)]
#[openapi(
    info(title = "hearth", description = "Isolated Linux workstations in Firecracker microVMs: the REST API, v1."),
    components(schemas(hearth_proto::api::ConsoleEnd, hearth_proto::api::WsClientMessage, hearth_proto::api::WsServerMessage))
)]
struct ApiDoc;

/// The server's health.
#[utoipa::path(get, path = "/api/v1/health", responses((status = 200, body = Health)))]
async fn health(State(svc): State<SharedService>) -> Result<Json<Health>, HttpError> {
    let n = svc.count().await?;
    Ok(Json(Health { status: "ok".into(), version: env!("CARGO_PKG_VERSION").into(), workstations: n }))
}

/// Every route, with its OpenAPI description.
fn routes() -> OpenApiRouter<SharedService> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(workstations::create, workstations::list))
        .routes(routes!(workstations::stream))
        .routes(routes!(workstations::get, workstations::delete))
        .routes(routes!(workstations::action))
        .routes(routes!(workstations::exec))
        .routes(routes!(console::console))
        .routes(routes!(console::stream))
        .routes(routes!(workstations::events))
        .routes(routes!(terminals::create, terminals::list))
        .routes(routes!(terminals::close))
        .routes(routes!(terminals::attach))
        .routes(routes!(terminals::input))
        .routes(routes!(terminals::output))
        .routes(routes!(terminals::screen))
        .routes(routes!(terminals::resize))
        .routes(routes!(files::upload, files::download))
        .routes(routes!(auth::sign_in, auth::whoami, auth::sign_out))
        .routes(routes!(auth::sign_in_token))
        .routes(routes!(auth::link))
        .routes(routes!(auth::methods))
        .routes(routes!(auth::hypha_start))
        .routes(routes!(auth::hypha_check))
        .routes(routes!(tokens::create, tokens::list))
        .routes(routes!(tokens::revoke))
        .routes(routes!(users::list, users::create))
        .routes(routes!(users::get, users::update, users::delete))
        .routes(routes!(users::quota, users::set_quota))
        .routes(routes!(users::allowlist, users::set_allowlist))
        .routes(routes!(users::host))
        .routes(routes!(metrics::metrics))
        .routes(routes!(audit::read))
        .routes(routes!(shares::list))
        .routes(routes!(shares::set, shares::remove))
}

/// The router and the OpenAPI document describing it.
pub fn router(svc: SharedService) -> axum::Router {
    let l = &svc.config.limits;
    let (max_body, max_file) = (l.max_body_bytes, l.max_file_bytes);
    let in_flight = layers::InFlight::new(l.max_requests_in_flight);
    let timeout = std::time::Duration::from_secs(l.request_timeout_secs);
    let guard = layers::Guard::new(&svc.config.auth);
    let (router, doc) = routes().split_for_parts();
    let doc = contract::document(serde_json::to_value(&doc).expect("the OpenAPI document serializes"), &svc.config);
    router
        .route("/api/v1/openapi.json", axum::routing::get(move || async move { Json(doc.clone()) }))
        .merge(crate::web::routes())
        .fallback(|| async { HttpError::not_found("no such route") })
        .method_not_allowed_fallback(|| async { HttpError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not take that method") })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn(move |req: Request, next: Next| announced_size_check(req, next, max_body, max_file)))
        .layer(axum::middleware::from_fn(move |req: Request, next: Next| layers::deadline(timeout, req, next)))
        .layer(axum::middleware::from_fn(move |req: Request, next: Next| layers::limit_in_flight(in_flight.clone(), req, next)))
        // Before anything else is done for it: a request for another host name, or from a
        // page of another origin, is refused.
        .layer(axum::middleware::from_fn(move |req: Request, next: Next| layers::guard(guard.clone(), req, next)))
        // Outermost: every answer, refusals by the layers above included, carries the id.
        .layer(axum::middleware::from_fn(layers::request_id))
        .with_state(svc)
}

/// Refuses a body whose announced length is over the limit from its header alone, before a
/// byte of it is read (the body limit above still bounds bodies sent without a length). File
/// uploads have their own, larger limit.
async fn announced_size_check(req: Request, next: Next, max_body: usize, max_file: u64) -> axum::response::Response {
    let upload = req.method() == axum::http::Method::PUT && req.uri().path().ends_with("/files");
    let max = if upload { max_file } else { max_body as u64 };
    let announced = req.headers().get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > max) {
        return HttpError::too_large(format!("request bodies are limited to {max} bytes")).into_response();
    }
    next.run(req).await
}
