//! `/mcp/context/*`: the shared context over plain HTTP+JSON (concept "Context API Endpoints").
//!
//! The session is `sessionId` (body or query) or, when absent, the session of the bearer token.
//! `aiId` attributes an operator's write to a participant; a participant may only name itself.

use actix::Addr;
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::auth::Auth;
use super::json::JsonBody;
use super::operation::{get, post};
use super::resource;
use crate::actors::Hub;
use crate::actors::hub::{Identify, Identity};
use crate::actors::messages::{ReadContext, ToSession, WriteContext};
use crate::api::context;
use crate::domain::auth::Credential;
use crate::domain::context::{
    ContextRequest, MEMORY_LIMIT, MemoryKind, Path, Segment, recent_memory,
};
use crate::error::HubError;

type Result<T> = std::result::Result<T, HubError>;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/mcp/context/set").route(post::<context::Set>()))
        .service(resource("/mcp/context/get").route(get::<context::Get>()))
        .service(resource("/mcp/context/get/{path}").route(get::<context::Get>()))
        .service(resource("/mcp/context/append/{path}").route(post::<context::Append>()))
        .service(resource("/mcp/context/delete/{path}").route(post::<context::Delete>()))
        .service(resource("/mcp/context/sync").route(post::<context::Sync>()))
        .service(resource("/mcp/context/memory/push").route(web::post().to(memory_push)))
        .service(resource("/mcp/context/memory/recent").route(web::get().to(memory_recent)))
        .service(resource("/mcp/context/memory/clear").route(web::post().to(memory_clear)))
        .service(
            resource("/mcp/context/notes/{ai_id}")
                .route(web::post().to(notes_set))
                .route(web::get().to(notes_get)),
        )
        .service(resource("/mcp/context/diff/{aiId}/{since}").route(get::<context::DiffSince>()));
}

/// The session a request is about: named, or the bearer token's own.
pub(super) async fn session_for(
    hub: &Addr<Hub>,
    credential: &Credential,
    named: Option<&str>,
) -> Result<Uuid> {
    if let Some(raw) = named {
        return Uuid::parse_str(raw.trim()).map_err(|_| {
            HubError::invalid("sessionId", format!("{raw:?} is not a session id (a UUID)"))
        });
    }
    match hub.send(Identify(credential.clone())).await?? {
        Identity::Participant { session_id, .. } => Ok(session_id),
        Identity::Operator => Err(HubError::invalid(
            "sessionId",
            "sessionId is required (or send a participant's bearer token)",
        )),
    }
}

async fn write(
    hub: &Addr<Hub>,
    credential: Credential,
    session: Option<&str>,
    ai_id: Option<String>,
    request: impl Into<ContextRequest>,
) -> Result<HttpResponse> {
    let session_id = session_for(hub, &credential, session).await?;
    let command = WriteContext {
        credential,
        as_participant: ai_id,
        request: request.into(),
    };
    let written = hub
        .send(ToSession {
            session_id,
            command,
        })
        .await??;
    Ok(HttpResponse::Ok().json(written))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SessionQuery {
    session_id: Option<String>,
}

async fn read(
    hub: &Addr<Hub>,
    credential: Credential,
    session: Option<&str>,
    path: Path,
) -> Result<HttpResponse> {
    let session_id = session_for(hub, &credential, session).await?;
    let value = hub
        .send(ToSession {
            session_id,
            command: ReadContext { credential, path },
        })
        .await??;
    Ok(HttpResponse::Ok().json(value))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MemoryPushBody {
    session_id: Option<String>,
    ai_id: Option<String>,
    kind: MemoryKind,
    value: Value,
}

/// `POST /mcp/context/memory/push` `{sessionId?, aiId?, kind: symbol|file|breakpoint, value}`.
async fn memory_push(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    JsonBody(b): JsonBody<MemoryPushBody>,
) -> Result<HttpResponse> {
    let request = ContextRequest::MemoryPush {
        kind: b.kind,
        entry: b.value,
    };
    write(&hub, credential, b.session_id.as_deref(), b.ai_id, request).await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MemoryClearBody {
    session_id: Option<String>,
    ai_id: Option<String>,
    kind: Option<MemoryKind>,
}

/// `POST /mcp/context/memory/clear` `{sessionId?, aiId?, kind?}`.
async fn memory_clear(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    JsonBody(b): JsonBody<MemoryClearBody>,
) -> Result<HttpResponse> {
    let request = ContextRequest::MemoryClear { kind: b.kind };
    write(&hub, credential, b.session_id.as_deref(), b.ai_id, request).await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RecentQuery {
    session_id: Option<String>,
    kind: Option<MemoryKind>,
    limit: Option<usize>,
}

/// `GET /mcp/context/memory/recent?sessionId=&kind=&limit=`.
async fn memory_recent(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    q: web::Query<RecentQuery>,
) -> Result<HttpResponse> {
    let session_id = session_for(&hub, &credential, q.session_id.as_deref()).await?;
    let path = Path::parse("workingMemory")?;
    let found = hub
        .send(ToSession {
            session_id,
            command: ReadContext { credential, path },
        })
        .await??;
    let limit = q.limit.unwrap_or(10).clamp(1, MEMORY_LIMIT);
    Ok(HttpResponse::Ok().json(recent_memory(&found.value, q.kind, limit)))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NotesBody {
    session_id: Option<String>,
    observations: Option<Vec<String>>,
    preferences: Option<Vec<String>>,
}

/// `POST /mcp/context/notes/{aiId}` `{sessionId?, observations?, preferences?}`: each AI writes
/// its own notes (the operator may write for it).
async fn notes_set(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    ai_id: web::Path<String>,
    JsonBody(b): JsonBody<NotesBody>,
) -> Result<HttpResponse> {
    let mut notes = serde_json::Map::new();
    if let Some(o) = b.observations {
        notes.insert("observations".into(), serde_json::json!(o));
    }
    if let Some(p) = b.preferences {
        notes.insert("preferences".into(), serde_json::json!(p));
    }
    let request = ContextRequest::Notes {
        ai_id: ai_id.into_inner(),
        notes: Value::Object(notes),
    };
    write(&hub, credential, b.session_id.as_deref(), None, request).await
}

/// `GET /mcp/context/notes/{aiId}?sessionId=`: everyone reads everyone's notes.
async fn notes_get(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    ai_id: web::Path<String>,
    q: web::Query<SessionQuery>,
) -> Result<HttpResponse> {
    let path = Path(vec![
        Segment::Key("aiNotes".into()),
        Segment::Key(ai_id.into_inner()),
    ]);
    read(&hub, credential, q.session_id.as_deref(), path).await
}
