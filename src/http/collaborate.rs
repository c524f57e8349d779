//! `/mcp/messages/*` and `/mcp/collaborate/*`: messages, checkpoints, status reports, the
//! handshake, roles, the change ledger, locks, suggestions, disputes and tasks over plain
//! HTTP+JSON.
//! Every route is the generic adapter over an `api` operation (grouped operations get their
//! `action` from the route), so these endpoints accept exactly what the MCP tools accept.
//!
//! As everywhere, the session is `sessionId` or the bearer token's own; `aiId` names the
//! participant an operator acts for (a participant may only name itself). The concept's `from`
//! (handshake) and `ai` (lock, checkpoint) mean `aiId`.

use actix_web::web;

use super::operation::{get, get_action, post, post_action};
use super::resource;
use crate::api::coordination::{ChangesArgs, HandshakeArgs, RoleArgs};
use crate::api::disputes::DisputeArgs;
use crate::api::locks::LockArgs;
use crate::api::messaging;
use crate::api::suggestions::SuggestionArgs;
use crate::api::tasks::TaskArgs;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/mcp/events/waiting").route(get::<crate::api::events::Waiting>()))
        .service(resource("/mcp/events/shown").route(post::<crate::api::events::Shown>()))
        .service(resource("/mcp/messages").route(get::<messaging::Read>()))
        .service(resource("/mcp/messages/send").route(post::<messaging::Send>()))
        .service(resource("/mcp/messages/ack").route(post::<messaging::Ack>()))
        .service(
            resource("/mcp/collaborate/checkpoint")
                .route(post_action::<messaging::Checkpoint>("begin")),
        )
        .service(
            resource("/mcp/collaborate/checkpoint/end")
                .route(post_action::<messaging::Checkpoint>("end")),
        )
        .service(resource("/mcp/collaborate/status").route(post::<messaging::Report>()))
        .service(resource("/mcp/collaborate/handshake").route(post::<HandshakeArgs>()))
        .service(resource("/mcp/collaborate/role").route(post::<RoleArgs>()))
        .service(resource("/mcp/collaborate/change").route(post_action::<ChangesArgs>("record")))
        .service(resource("/mcp/collaborate/changes").route(get_action::<ChangesArgs>("list")))
        .service(resource("/mcp/collaborate/lock").route(post_action::<LockArgs>("acquire")))
        .service(resource("/mcp/collaborate/lock/renew").route(post_action::<LockArgs>("renew")))
        .service(
            resource("/mcp/collaborate/lock/release").route(post_action::<LockArgs>("release")),
        )
        .service(resource("/mcp/collaborate/locks").route(get_action::<LockArgs>("list")))
        .service(
            resource("/mcp/collaborate/suggestion").route(post_action::<SuggestionArgs>("submit")),
        )
        .service(
            resource("/mcp/collaborate/suggestion/resolve")
                .route(post_action::<SuggestionArgs>("resolve")),
        )
        .service(
            resource("/mcp/collaborate/suggestions").route(get_action::<SuggestionArgs>("list")),
        )
        .service(resource("/mcp/collaborate/dispute").route(post_action::<DisputeArgs>("raise")))
        .service(
            resource("/mcp/collaborate/dispute/resolve")
                .route(post_action::<DisputeArgs>("resolve")),
        )
        .service(
            resource("/mcp/collaborate/dispute/vote").route(post_action::<DisputeArgs>("vote")),
        )
        .service(resource("/mcp/collaborate/disputes").route(get_action::<DisputeArgs>("list")))
        .service(resource("/mcp/collaborate/task").route(post_action::<TaskArgs>("create")))
        .service(resource("/mcp/collaborate/task/update").route(post_action::<TaskArgs>("update")))
        .service(resource("/mcp/collaborate/task/assign").route(post_action::<TaskArgs>("assign")))
        .service(
            resource("/mcp/collaborate/task/handoff").route(post_action::<TaskArgs>("handoff")),
        )
        .service(resource("/mcp/collaborate/task/claim").route(post_action::<TaskArgs>("claim")))
        .service(resource("/mcp/collaborate/tasks").route(get_action::<TaskArgs>("list")));
}
