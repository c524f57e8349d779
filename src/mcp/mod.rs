//! The MCP facade: Streamable HTTP on `/mcp` (and the aliases `/mcp-gemini`, `/mcp-streaming`
//! kept from the tool this grew out of), JSON-RPC dispatch, and the tool catalogue.

pub mod dispatch;
pub mod modern;
pub mod prompts;
pub mod protocol;
pub mod push;
pub mod registry;
pub mod resend;
pub mod resources;
pub(crate) mod sse;
pub mod tools;
pub mod transport;

use actix_web::web;

pub use registry::McpRegistry;

/// The paths that serve MCP.
pub const PATHS: [&str; 3] = ["/mcp", "/mcp-gemini", "/mcp-streaming"];

pub fn configure(cfg: &mut web::ServiceConfig) {
    for path in PATHS {
        cfg.service(
            web::resource(path)
                .route(web::post().to(transport::post))
                .route(web::get().to(transport::get))
                .route(web::delete().to(transport::delete))
                .default_service(web::to(transport::other_method)),
        );
    }
}
