//! HTTP transport: REST endpoints of the concept, health. Each handler turns its input into one
//! actor message and the reply into JSON; no domain logic lives here.

mod auth;
mod collaborate;
mod context;
mod evolution;
pub mod forward;
pub(crate) mod forward_ws;
pub mod guard;
mod health;
pub mod hop;
mod json;
mod operation;
mod pages;
mod sessions;
mod splice;

use actix_web::web;

use crate::error::HubError;

pub use auth::{bearer_token, credential};
pub use json::{BodyLimit, JsonBody, read_body};

/// Registers every route. The app data (`Addr<Hub>`, `Addr<McpRegistry>`, `BodyLimit`) is added
/// by `app`. No transport touches the store: everything goes through the actors.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::QueryConfig::default().error_handler(|err, _| {
        HubError::Invalid {
            code: "invalid_query",
            message: format!("invalid query string: {err}"),
            field: None,
        }
        .into()
    }))
    .app_data(web::PathConfig::default().error_handler(|err, _| {
        HubError::Invalid {
            code: "invalid_path",
            message: format!("invalid path: {err}"),
            field: None,
        }
        .into()
    }))
    .configure(pages::routes)
    .service(resource("/healthz").route(web::get().to(health::healthz)))
    .service(resource("/ws").route(web::get().to(crate::ws::endpoint)))
    .service(resource(crate::ws::FRAME_ROUTE).route(web::post().to(crate::ws::frame)))
    .service(resource("/metrics").route(web::get().to(crate::ws::metrics)))
    .configure(sessions::routes)
    .configure(context::routes)
    .configure(collaborate::routes)
    .configure(evolution::routes)
    .configure(crate::mcp::configure)
    .default_service(web::to(not_found));
}

/// A resource whose wrong-method answer is a JSON 405 like every other error.
pub(crate) fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn method_not_allowed(
    req: actix_web::HttpRequest,
) -> Result<actix_web::HttpResponse, HubError> {
    Err(HubError::MethodNotAllowed(format!(
        "{} is not allowed on {}",
        req.method(),
        req.path()
    )))
}

async fn not_found(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, HubError> {
    Err(HubError::NotFound {
        code: "no_route",
        message: format!("no endpoint {} {}", req.method(), req.path()),
    })
}
