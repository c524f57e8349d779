//! `/mcp/session/*`: session lifecycle over plain HTTP+JSON (concept "Session Management API").
//! Every route but `token` is the generic adapter over an `api::sessions` operation.

use actix::Addr;
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use uuid::Uuid;

use super::auth::Auth;
use super::json::JsonBody;
use super::operation::{create, get, post, post_action};
use super::resource;
use crate::actors::Hub;
use crate::actors::messages::{ReissueToken, ToSession};
use crate::api::over_time::SessionArgs;
use crate::api::sessions;
use crate::error::HubError;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/mcp/session/create").route(create::<sessions::Create>()))
        .service(resource("/mcp/session/join").route(create::<sessions::Join>()))
        .service(resource("/mcp/session/leave").route(post::<sessions::Leave>()))
        .service(resource("/mcp/session/list").route(get::<sessions::List>()))
        .service(resource("/mcp/session/resume").route(post_action::<SessionArgs>("resume")))
        .service(resource("/mcp/session/save").route(post_action::<SessionArgs>("save")))
        .service(resource("/mcp/session/export").route(post_action::<SessionArgs>("export")))
        .service(resource("/mcp/session/{sessionId}").route(get::<sessions::Get>()))
        .service(resource("/mcp/session/{sessionId}/status").route(post::<sessions::SetStatus>()))
        .service(resource("/mcp/session/{id}/token").route(web::post().to(token)));
}

type Result<T> = std::result::Result<T, HubError>;

/// `POST /mcp/session/{id}/token` `{participant}`: a fresh bearer token for an MCP client's
/// configuration (the old one stops working). The operator, or the participant itself.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    participant: String,
}

async fn token(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    path: web::Path<String>,
    JsonBody(body): JsonBody<TokenBody>,
) -> Result<HttpResponse> {
    let session_id = session_id(&path, "id")?;
    let command = ReissueToken {
        credential,
        ai_id: body.participant.clone(),
    };
    let token = hub
        .send(ToSession {
            session_id,
            command,
        })
        .await??;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "sessionId": session_id,
        "participant": body.participant,
        "token": token,
    })))
}

fn session_id(raw: &str, field: &str) -> Result<Uuid> {
    Uuid::parse_str(raw.trim())
        .map_err(|_| HubError::invalid(field, format!("{raw:?} is not a session id (a UUID)")))
}
