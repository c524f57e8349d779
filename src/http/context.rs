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
use super::resource;
use crate::actors::Hub;
use crate::actors::hub::{Identify, Identity};
use crate::actors::messages::{DiffContext, ReadContext, Since, ToSession, WriteContext};
use crate::domain::auth::Credential;
use crate::domain::context::{
    ContextOp, ContextRequest, MEMORY_LIMIT, MemoryKind, Path, Segment, recent_memory,
};
use crate::error::HubError;

type Result<T> = std::result::Result<T, HubError>;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/mcp/context/set").route(web::post().to(set)))
        .service(resource("/mcp/context/get").route(web::get().to(get_all)))
        .service(resource("/mcp/context/get/{key}").route(web::get().to(get)))
        .service(resource("/mcp/context/append/{key}").route(web::post().to(append)))
        .service(resource("/mcp/context/delete/{key}").route(web::post().to(delete)))
        .service(resource("/mcp/context/sync").route(web::post().to(sync)))
        .service(resource("/mcp/context/memory/push").route(web::post().to(memory_push)))
        .service(resource("/mcp/context/memory/recent").route(web::get().to(memory_recent)))
        .service(resource("/mcp/context/memory/clear").route(web::post().to(memory_clear)))
        .service(
            resource("/mcp/context/notes/{ai_id}")
                .route(web::post().to(notes_set))
                .route(web::get().to(notes_get)),
        )
        .service(resource("/mcp/context/diff/{ai_id}/{since}").route(web::get().to(diff)));
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

fn path(text: &str) -> Result<Path> {
    Ok(Path::parse(text)?)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SetBody {
    session_id: Option<String>,
    ai_id: Option<String>,
    #[serde(alias = "key")]
    path: String,
    value: Value,
    expected_version: Option<i64>,
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

/// `POST /mcp/context/set` `{sessionId?, aiId?, path, value, expectedVersion?}`.
async fn set(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    JsonBody(b): JsonBody<SetBody>,
) -> Result<HttpResponse> {
    let op = ContextOp::Set {
        path: path(&b.path)?,
        value: b.value,
        expected: b.expected_version,
    };
    write(&hub, credential, b.session_id.as_deref(), b.ai_id, op).await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AppendBody {
    session_id: Option<String>,
    ai_id: Option<String>,
    value: Value,
    expected_version: Option<i64>,
}

/// `POST /mcp/context/append/{key}` `{sessionId?, aiId?, value, expectedVersion?}`.
async fn append(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    key: web::Path<String>,
    JsonBody(b): JsonBody<AppendBody>,
) -> Result<HttpResponse> {
    let op = ContextOp::Append {
        path: path(&key)?,
        value: b.value,
        expected: b.expected_version,
    };
    write(&hub, credential, b.session_id.as_deref(), b.ai_id, op).await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DeleteBody {
    session_id: Option<String>,
    ai_id: Option<String>,
    expected_version: Option<i64>,
}

/// `POST /mcp/context/delete/{key}` `{sessionId?, aiId?, expectedVersion?}`.
async fn delete(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    key: web::Path<String>,
    JsonBody(b): JsonBody<DeleteBody>,
) -> Result<HttpResponse> {
    let op = ContextOp::Delete {
        path: path(&key)?,
        expected: b.expected_version,
    };
    write(&hub, credential, b.session_id.as_deref(), b.ai_id, op).await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SyncBody {
    session_id: Option<String>,
    ai_id: Option<String>,
    updates: Value,
}

/// `POST /mcp/context/sync` `{sessionId?, aiId?, updates}`: deep merge, attributed to the caller.
async fn sync(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    JsonBody(b): JsonBody<SyncBody>,
) -> Result<HttpResponse> {
    let op = ContextOp::Merge { updates: b.updates };
    write(&hub, credential, b.session_id.as_deref(), b.ai_id, op).await
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

/// `GET /mcp/context/get/{key}?sessionId=`.
async fn get(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    key: web::Path<String>,
    q: web::Query<SessionQuery>,
) -> Result<HttpResponse> {
    read(&hub, credential, q.session_id.as_deref(), path(&key)?).await
}

/// `GET /mcp/context/get?sessionId=`: the whole document.
async fn get_all(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    q: web::Query<SessionQuery>,
) -> Result<HttpResponse> {
    read(&hub, credential, q.session_id.as_deref(), Path::root()).await
}

/// `GET /mcp/context/diff/{aiId}/{since}?sessionId=`: `since` is an event id or an RFC 3339
/// time; `aiId` is who asks (a participant may only ask as itself).
async fn diff(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    p: web::Path<(String, String)>,
    q: web::Query<SessionQuery>,
) -> Result<HttpResponse> {
    let (ai_id, since) = p.into_inner();
    let since = match since.parse::<i64>() {
        Ok(n) if n >= 0 => Since::Event(n),
        _ => Since::Time(
            chrono::DateTime::parse_from_rfc3339(&since)
                .map_err(|_| {
                    HubError::invalid(
                        "since",
                        format!("{since:?} is neither an event id nor an RFC 3339 time"),
                    )
                })?
                .with_timezone(&chrono::Utc),
        ),
    };
    let session_id = session_for(&hub, &credential, q.session_id.as_deref()).await?;
    let command = DiffContext {
        credential,
        as_participant: Some(ai_id),
        since,
    };
    let diff = hub
        .send(ToSession {
            session_id,
            command,
        })
        .await??;
    Ok(HttpResponse::Ok().json(diff))
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
