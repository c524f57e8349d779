//! `/mcp/context/*`: the shared context over plain HTTP+JSON (concept "Context API Endpoints").
//! Every route is the generic adapter over an `api` operation.
//!
//! The session is `sessionId` (body or query) or, when absent, the session of the bearer token.
//! `aiId` attributes an operator's write to a participant; a participant may only name itself.

use actix_web::web;

use super::operation::{get, get_action, post, post_action};
use super::resource;
use crate::api::{batch, context, notes};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/mcp/context/set").route(post::<context::Set>()))
        .service(resource("/mcp/context/get").route(get::<context::Get>()))
        .service(resource("/mcp/context/get/{path}").route(get::<context::Get>()))
        .service(resource("/mcp/context/append/{path}").route(post::<context::Append>()))
        .service(resource("/mcp/context/delete/{path}").route(post::<context::Delete>()))
        .service(resource("/mcp/context/sync").route(post::<context::Sync>()))
        .service(resource("/mcp/batch").route(post::<batch::Batch>()))
        .service(resource("/mcp/context/diff/{aiId}/{since}").route(get::<context::DiffSince>()))
        .service(resource("/mcp/context/memory/push").route(post_action::<notes::Memory>("push")))
        .service(
            resource("/mcp/context/memory/recent").route(get_action::<notes::Memory>("recent")),
        )
        .service(resource("/mcp/context/memory/clear").route(post_action::<notes::Memory>("clear")))
        .service(
            resource("/mcp/context/notes/{aiId}")
                .route(post::<notes::Notes>())
                .route(get::<notes::Notes>()),
        )
        .service(resource("/mcp/context/discovery").route(post::<notes::Discovery>()));
}
