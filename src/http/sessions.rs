//! `/mcp/session/*`: session lifecycle over plain HTTP+JSON (concept "Session Management API").

use std::collections::BTreeSet;

use actix::Addr;
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::auth::Auth;
use super::json::JsonBody;
use super::resource;
use crate::actors::Hub;
use crate::actors::messages::{
    ChangeStatus, CreateSession, GetSession, JoinSession, LeaveSession, ListSessions, ReissueToken,
    ToSession,
};
use crate::domain::role::{Permission, Role};
use crate::domain::session::{
    DEFAULT_REVIEW_TIMEOUT, DEFAULT_SAVE_INTERVAL, HandshakeMode, ParticipantRequest,
    ParticipantSpec, RotationPolicy, SessionSpec, SessionStatus, StatusAction,
    assign_default_roles, rotation_secs,
};
use crate::error::HubError;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/mcp/session/create").route(web::post().to(create)))
        .service(resource("/mcp/session/join").route(web::post().to(join)))
        .service(resource("/mcp/session/leave").route(web::post().to(leave)))
        .service(resource("/mcp/session/list").route(web::get().to(list)))
        .service(resource("/mcp/session/{id}").route(web::get().to(get)))
        .service(resource("/mcp/session/{id}/status").route(web::post().to(status)))
        .service(resource("/mcp/session/{id}/token").route(web::post().to(token)));
}

type Result<T> = std::result::Result<T, HubError>;

/// `POST /mcp/session/create`. `participants` may be a list of ids (`["claude", "gemini"]`: the
/// first drives, the others navigate), a list of `{aiId, role?, permissions?}`, or the concept's
/// map `{"claude": {"role": "driver", "permissions": [...]}}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateBody {
    name: String,
    #[serde(default)]
    participants: Option<Value>,
    save_interval: Option<u32>,
    handshake_mode: Option<HandshakeMode>,
    rotation_policy: Option<RotationPolicy>,
    /// Minutes per driver under automatic rotation (the concept's `roleRotationInterval`).
    role_rotation_interval: Option<f64>,
    review_timeout_secs: Option<u32>,
    /// Default assignment strategy: roundRobin, loadBalanced, skillBased, random.
    task_allocation: Option<crate::domain::task::Strategy>,
    metadata: Option<Value>,
}

async fn create(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<HttpResponse> {
    let spec = SessionSpec {
        name: body.name,
        participants: participants_from(body.participants)?,
        save_interval: body.save_interval.unwrap_or(DEFAULT_SAVE_INTERVAL),
        handshake_mode: body.handshake_mode.unwrap_or_default(),
        rotation_policy: body.rotation_policy.unwrap_or_default(),
        rotation_interval_secs: rotation_secs(body.role_rotation_interval)?,
        review_timeout_secs: body.review_timeout_secs.unwrap_or(DEFAULT_REVIEW_TIMEOUT),
        task_allocation: body.task_allocation.unwrap_or_default(),
        metadata: body
            .metadata
            .unwrap_or_else(|| Value::Object(Default::default())),
    };
    let created = hub.send(CreateSession { credential, spec }).await??;
    Ok(HttpResponse::Created().json(created))
}

/// `POST /mcp/session/join` `{sessionId, participant, role?, permissions?}`; role defaults to
/// observer (least privilege).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct JoinBody {
    session_id: String,
    participant: String,
    role: Option<Role>,
    permissions: Option<BTreeSet<Permission>>,
    /// For skill-based task assignment.
    #[serde(default)]
    skills: Vec<String>,
}

async fn join(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    JsonBody(body): JsonBody<JoinBody>,
) -> Result<HttpResponse> {
    let session_id = session_id(&body.session_id, "sessionId")?;
    let participant = ParticipantSpec {
        ai_id: body.participant,
        role: body.role.unwrap_or(Role::Observer),
        permissions: body.permissions,
        skills: body.skills,
    };
    let command = JoinSession {
        credential,
        participant,
    };
    let joined = hub
        .send(ToSession {
            session_id,
            command,
        })
        .await??;
    Ok(HttpResponse::Created().json(joined))
}

/// `POST /mcp/session/leave` `{sessionId, participant}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LeaveBody {
    session_id: String,
    participant: String,
}

async fn leave(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    JsonBody(body): JsonBody<LeaveBody>,
) -> Result<HttpResponse> {
    let session_id = session_id(&body.session_id, "sessionId")?;
    let command = LeaveSession {
        credential,
        ai_id: body.participant,
    };
    let view = hub
        .send(ToSession {
            session_id,
            command,
        })
        .await??;
    Ok(HttpResponse::Ok().json(view))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<SessionStatus>,
    limit: Option<i64>,
    offset: Option<i64>,
}

const MAX_LIST: i64 = 500;

/// `GET /mcp/session/list?status=&limit=&offset=`: most recently active first.
async fn list(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(HubError::invalid(
            "limit",
            format!("limit must be between 1 and {MAX_LIST}"),
        ));
    }
    let offset = query.offset.unwrap_or(0);
    if offset < 0 {
        return Err(HubError::invalid("offset", "offset must not be negative"));
    }
    let sessions = hub
        .send(ListSessions {
            credential,
            status: query.status,
            limit,
            offset,
        })
        .await??;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "sessions": sessions })))
}

/// `GET /mcp/session/{id}`.
async fn get(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let session_id = session_id(&path, "id")?;
    let view = hub
        .send(ToSession {
            session_id,
            command: GetSession { credential },
        })
        .await??;
    Ok(HttpResponse::Ok().json(view))
}

/// `POST /mcp/session/{id}/status` with `{"action": "pause"|"resume"|"complete"}` or the target
/// state `{"status": "paused"|"active"|"completed"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    action: Option<StatusAction>,
    status: Option<SessionStatus>,
}

async fn status(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    path: web::Path<String>,
    JsonBody(body): JsonBody<StatusBody>,
) -> Result<HttpResponse> {
    let session_id = session_id(&path, "id")?;
    let to = match (body.action, body.status) {
        (Some(a), None) => a.target(),
        (None, Some(s)) => s,
        _ => {
            return Err(HubError::invalid(
                "action",
                "send exactly one of action (pause, resume, complete) or status (active, paused, completed)",
            ));
        }
    };
    let command = ChangeStatus { credential, to };
    let view = hub
        .send(ToSession {
            session_id,
            command,
        })
        .await??;
    Ok(HttpResponse::Ok().json(view))
}

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

/// The three accepted shapes of `participants`, with field paths in every error.
fn participants_from(value: Option<Value>) -> Result<Vec<ParticipantSpec>> {
    let mut out = Vec::new();
    match value {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.into_iter().enumerate() {
                let at = format!("participants[{i}]");
                out.push(match item {
                    Value::String(ai_id) => request(ai_id),
                    Value::Object(mut o) => {
                        let id = o
                            .remove("aiId")
                            .or_else(|| o.remove("id"))
                            .ok_or_else(|| HubError::Invalid {
                                code: "missing_field",
                                message: format!("{at}.aiId is required"),
                                field: Some(format!("{at}.aiId")),
                            })?;
                        let id = typed::<String>(id, &format!("{at}.aiId"))?;
                        entry(id, o, &at)?
                    }
                    _ => {
                        return Err(HubError::invalid(
                            at,
                            "each participant is an id string or an object {aiId, role?, permissions?}",
                        ));
                    }
                });
            }
        }
        Some(Value::Object(map)) => {
            for (id, cfg) in map {
                let at = format!("participants.{id}");
                match cfg {
                    Value::Object(o) => out.push(entry(id, o, &at)?),
                    Value::Null => out.push(request(id)),
                    _ => return Err(HubError::invalid(at, "expected {role?, permissions?}")),
                }
            }
        }
        Some(_) => {
            return Err(HubError::invalid(
                "participants",
                "participants is a list of ids, a list of {aiId, role}, or a map id → {role}",
            ));
        }
    }
    Ok(assign_default_roles(out))
}

fn request(ai_id: String) -> ParticipantRequest {
    ParticipantRequest {
        ai_id,
        role: None,
        permissions: None,
        skills: Vec::new(),
    }
}

fn entry(
    id: String,
    mut o: serde_json::Map<String, Value>,
    at: &str,
) -> Result<ParticipantRequest> {
    let role = o
        .remove("role")
        .map(|v| typed::<Role>(v, &format!("{at}.role")))
        .transpose()?;
    let permissions = o
        .remove("permissions")
        .map(|v| typed::<BTreeSet<Permission>>(v, &format!("{at}.permissions")))
        .transpose()?;
    let skills = o
        .remove("skills")
        .map(|v| typed::<Vec<String>>(v, &format!("{at}.skills")))
        .transpose()?
        .unwrap_or_default();
    o.remove("endpoint"); // the concept's config names the MCP endpoint; every endpoint is equal here
    if let Some(unknown) = o.keys().next() {
        return Err(HubError::invalid(
            format!("{at}.{unknown}"),
            format!("unknown field {unknown:?}; expected aiId, role, permissions, skills"),
        ));
    }
    Ok(ParticipantRequest {
        ai_id: id,
        role,
        permissions,
        skills,
    })
}

fn typed<T: serde::de::DeserializeOwned>(v: Value, field: &str) -> Result<T> {
    serde_json::from_value(v).map_err(|e| HubError::invalid(field, format!("{field}: {e}")))
}
