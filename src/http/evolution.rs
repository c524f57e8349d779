//! `/mcp/evolution*`: populations, insights and a session's genome and fitness, the generic
//! adapter over `api::evolution::EvolutionArgs` (the MCP `evolution` tool's type).

use actix_web::web;

use super::operation::get_action;
use super::resource;
use crate::api::evolution::EvolutionArgs;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/mcp/evolution").route(get_action::<EvolutionArgs>("status")))
        .service(resource("/mcp/evolution/insights").route(get_action::<EvolutionArgs>("insights")))
        .service(resource("/mcp/evolution/session").route(get_action::<EvolutionArgs>("session")));
}
