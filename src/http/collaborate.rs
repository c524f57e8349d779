//! Messages, checkpoints and status reports over plain HTTP+JSON: the REST twins of the
//! `message_*`, `messages_read`, `checkpoint` and `status_report` tools (same actor messages).
//!
//! As in `/mcp/context/*`, the session is `sessionId` or the bearer token's own; `aiId` names the
//! participant an operator acts for (a participant may only name itself).

use actix::Addr;
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::Value;

use super::auth::Auth;
use super::context::session_for;
use super::json::JsonBody;
use super::resource;
use crate::actors::Hub;
use crate::actors::messages::{
    AckMessages, BeginCheckpoint, EndCheckpoint, HandshakeStep, ListChanges, ReadMessages,
    RecordChange, SendMessage, ToSession, WriteContext,
};
use crate::domain::auth::Credential;
use crate::domain::checkpoint::parse_duration;
use crate::domain::context::ContextRequest;
use crate::domain::event::Priority;
use crate::domain::message::MessageSpec;
use crate::domain::monitor::{CheckKind, CheckStatus, StatusReport};
use crate::error::HubError;
use crate::mcp::tools::coordination::{
    ChangesArgs, ChangesCommand, HandshakeArgs, LockArgs, LockCommand, RoleArgs, RoleCommand,
    SuggestionArgs, SuggestionCommand, TaskArgs, TaskRequest,
};
use crate::mcp::tools::{ack_selection, args, message_query};
use crate::store::ledger::ChangeQuery;

type Result<T> = std::result::Result<T, HubError>;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/mcp/messages").route(web::get().to(read)))
        .service(resource("/mcp/messages/send").route(web::post().to(send)))
        .service(resource("/mcp/messages/ack").route(web::post().to(ack)))
        .service(resource("/mcp/collaborate/checkpoint").route(web::post().to(checkpoint_begin)))
        .service(resource("/mcp/collaborate/checkpoint/end").route(web::post().to(checkpoint_end)))
        .service(resource("/mcp/collaborate/status").route(web::post().to(status)))
        .service(resource("/mcp/collaborate/handshake").route(web::post().to(handshake)))
        .service(resource("/mcp/collaborate/role").route(web::post().to(role)))
        .service(resource("/mcp/collaborate/change").route(web::post().to(change)))
        .service(resource("/mcp/collaborate/changes").route(web::get().to(changes)))
        .service(resource("/mcp/collaborate/lock").route(web::post().to(lock_acquire)))
        .service(resource("/mcp/collaborate/lock/renew").route(web::post().to(lock_renew)))
        .service(resource("/mcp/collaborate/lock/release").route(web::post().to(lock_release)))
        .service(resource("/mcp/collaborate/locks").route(web::get().to(locks)))
        .service(resource("/mcp/collaborate/suggestion").route(web::post().to(suggestion_submit)))
        .service(
            resource("/mcp/collaborate/suggestion/resolve")
                .route(web::post().to(suggestion_resolve)),
        )
        .service(resource("/mcp/collaborate/suggestions").route(web::get().to(suggestions)))
        .service(resource("/mcp/collaborate/task").route(web::post().to(task_create)))
        .service(resource("/mcp/collaborate/task/{action}").route(web::post().to(task_action)))
        .service(resource("/mcp/collaborate/tasks").route(web::get().to(tasks)));
}

/// A body parsed as the matching tool's arguments, with `action` set by the endpoint.
fn tool_args<T: serde::de::DeserializeOwned>(body: Value, action: &str) -> Result<(Addressed, T)> {
    let mut a = addressed(body, &[])?;
    let Value::Object(rest) = &mut a.rest else {
        unreachable!("addressed keeps an object");
    };
    if rest.insert("action".into(), Value::from(action)).is_some() {
        return Err(HubError::invalid(
            "action",
            "the endpoint says what to do; drop action",
        ));
    }
    let parsed = args::<T>(std::mem::take(&mut a.rest))?;
    Ok((a, parsed))
}

/// Runs a task request given as the `task` tool's arguments with `action` set.
async fn task_command(
    hub: &Addr<Hub>,
    credential: Credential,
    body: Value,
    action: &str,
) -> Result<HttpResponse> {
    let (a, parsed) = tool_args::<TaskArgs>(body, action)?;
    let session = a.session_id.as_deref();
    match parsed.into_request(credential.clone(), a.ai_id)? {
        TaskRequest::Write(c) => to_session(hub, &credential, session, c).await,
        TaskRequest::List(c) => to_session(hub, &credential, session, c).await,
    }
}

/// `POST /mcp/collaborate/task` `{description, assignedTo?, subtasks?, dependencies?, skills?,
/// estimatedDuration?, metadata?, parent?, strategy?}`: creates a task (and its subtasks).
async fn task_create(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    JsonBody(body): JsonBody<Value>,
) -> Result<HttpResponse> {
    task_command(&hub, credential, body, "create").await
}

/// `POST /mcp/collaborate/task/{update|assign|handoff|claim}` `{taskId, …}`.
async fn task_action(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    action: web::Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<HttpResponse> {
    let action = action.into_inner();
    if !["update", "assign", "handoff", "claim"].contains(&action.as_str()) {
        return Err(HubError::NotFound {
            code: "no_route",
            message: format!("no task action {action:?}; use update, assign, handoff or claim"),
        });
    }
    task_command(&hub, credential, body, &action).await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TasksQuery {
    session_id: Option<String>,
    status: Option<crate::domain::task::Status>,
    assigned_to: Option<String>,
    parent: Option<i64>,
    id: Option<i64>,
}

/// `GET /mcp/collaborate/tasks?status=&assignedTo=&parent=&id=`.
async fn tasks(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    q: web::Query<TasksQuery>,
) -> Result<HttpResponse> {
    let q = q.into_inner();
    let command = crate::actors::messages::ListTasks {
        credential: credential.clone(),
        status: q.status,
        assigned_to: q.assigned_to,
        parent: q.parent,
        id: q.id,
    };
    to_session(&hub, &credential, q.session_id.as_deref(), command).await
}

/// Runs a suggestion command given as the `suggestion` tool's arguments with `action` set.
async fn suggestion_command(
    hub: &Addr<Hub>,
    credential: Credential,
    body: Value,
    action: &str,
) -> Result<HttpResponse> {
    let (a, parsed) = tool_args::<SuggestionArgs>(body, action)?;
    let session = a.session_id.as_deref();
    match parsed.into_command(credential.clone(), a.ai_id)? {
        SuggestionCommand::Submit(c) => to_session(hub, &credential, session, c).await,
        SuggestionCommand::Resolve(c) => to_session(hub, &credential, session, c).await,
        SuggestionCommand::List(c) => to_session(hub, &credential, session, c).await,
    }
}

/// `POST /mcp/collaborate/suggestion` `{filePath, diff | before/after, reason?, taskId?}`.
async fn suggestion_submit(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    JsonBody(body): JsonBody<Value>,
) -> Result<HttpResponse> {
    suggestion_command(&hub, credential, body, "submit").await
}

/// `POST /mcp/collaborate/suggestion/resolve` `{id, accept, note?}`.
async fn suggestion_resolve(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    JsonBody(body): JsonBody<Value>,
) -> Result<HttpResponse> {
    suggestion_command(&hub, credential, body, "resolve").await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SuggestionsQuery {
    session_id: Option<String>,
    all: Option<bool>,
}

/// `GET /mcp/collaborate/suggestions?sessionId=&all=`: pending (or all) suggestions.
async fn suggestions(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    q: web::Query<SuggestionsQuery>,
) -> Result<HttpResponse> {
    let command = crate::actors::messages::ListSuggestions {
        credential: credential.clone(),
        pending_only: !q.all.unwrap_or(false),
        limit: 100,
    };
    to_session(&hub, &credential, q.session_id.as_deref(), command).await
}

/// Runs a lock command given as the `lock` tool's arguments with `action` set.
async fn lock_command(
    hub: &Addr<Hub>,
    credential: Credential,
    body: Value,
    action: &str,
) -> Result<HttpResponse> {
    let (a, parsed) = tool_args::<LockArgs>(body, action)?;
    let session = a.session_id.as_deref();
    match parsed.into_command(credential.clone(), a.ai_id)? {
        LockCommand::Acquire(c) => to_session(hub, &credential, session, c).await,
        LockCommand::Renew(c) => to_session(hub, &credential, session, c).await,
        LockCommand::Release(c) => to_session(hub, &credential, session, c).await,
        LockCommand::List(c) => to_session(hub, &credential, session, c).await,
    }
}

/// `POST /mcp/collaborate/lock`: the concept's `{ai, resource, operation, duration: "estimated_30s"}`
/// (plus `mode`, `wait`).
async fn lock_acquire(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    JsonBody(body): JsonBody<Value>,
) -> Result<HttpResponse> {
    lock_command(&hub, credential, body, "acquire").await
}

/// `POST /mcp/collaborate/lock/renew` `{lockId, duration?}`.
async fn lock_renew(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    JsonBody(body): JsonBody<Value>,
) -> Result<HttpResponse> {
    lock_command(&hub, credential, body, "renew").await
}

/// `POST /mcp/collaborate/lock/release` `{lockId, force?}` (also cancels a queued request).
async fn lock_release(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    JsonBody(body): JsonBody<Value>,
) -> Result<HttpResponse> {
    lock_command(&hub, credential, body, "release").await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SessionQuery {
    session_id: Option<String>,
}

/// `GET /mcp/collaborate/locks?sessionId=`: held and queued locks.
async fn locks(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    q: web::Query<SessionQuery>,
) -> Result<HttpResponse> {
    let command = crate::actors::messages::ListLocks {
        credential: credential.clone(),
    };
    to_session(&hub, &credential, q.session_id.as_deref(), command).await
}

/// A body with the session fields taken out: `sessionId`, and the participant as `aiId` (or
/// the concept's `from` / `ai`). The rest is parsed as the matching tool's arguments, so REST
/// and MCP accept exactly the same fields.
struct Addressed {
    session_id: Option<String>,
    ai_id: Option<String>,
    rest: Value,
}

fn addressed(body: Value, drop: &[&str]) -> Result<Addressed> {
    let Value::Object(mut map) = body else {
        return Err(HubError::invalid("body", "the body is a JSON object"));
    };
    let mut text = |key: &str| -> Result<Option<String>> {
        match map.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(HubError::invalid(
                key.to_owned(),
                format!("{key} is a string"),
            )),
        }
    };
    let session_id = text("sessionId")?;
    let ai_id = match (text("aiId")?, text("from")?, text("ai")?) {
        (a, None, None) | (None, a, None) | (None, None, a) => a,
        _ => {
            return Err(HubError::invalid(
                "aiId",
                "name the participant once (aiId, from or ai)",
            ));
        }
    };
    for key in drop {
        map.remove(*key);
    }
    Ok(Addressed {
        session_id,
        ai_id,
        rest: Value::Object(map),
    })
}

/// `POST /mcp/collaborate/handshake`: the concept's messages, e.g.
/// `{from, role, status: "work_complete", changes, needsReview, message}` (`role` is informative;
/// the session knows each participant's role).
async fn handshake(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    JsonBody(body): JsonBody<Value>,
) -> Result<HttpResponse> {
    let a = addressed(body, &["role"])?;
    let command = HandshakeStep {
        credential: credential.clone(),
        as_participant: a.ai_id,
        step: args::<HandshakeArgs>(a.rest)?.into_step()?,
    };
    to_session(&hub, &credential, a.session_id.as_deref(), command).await
}

/// `POST /mcp/collaborate/role` `{action: request|respond|assign, …}` as the `role` tool.
async fn role(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    JsonBody(body): JsonBody<Value>,
) -> Result<HttpResponse> {
    let a = addressed(body, &[])?;
    let session = a.session_id.as_deref();
    match args::<RoleArgs>(a.rest)?.into_command(credential.clone(), a.ai_id)? {
        RoleCommand::Request(c) => to_session(&hub, &credential, session, c).await,
        RoleCommand::Respond(c) => to_session(&hub, &credential, session, c).await,
        RoleCommand::Assign(c) => to_session(&hub, &credential, session, c).await,
    }
}

/// `POST /mcp/collaborate/change` `{filePath, operation?, diff | before/after, …}`.
async fn change(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    JsonBody(body): JsonBody<Value>,
) -> Result<HttpResponse> {
    let (a, parsed) = tool_args::<ChangesArgs>(body, "record")?;
    let ChangesCommand::Record(spec) = parsed.into_command()? else {
        unreachable!("action is record");
    };
    let command = RecordChange {
        credential: credential.clone(),
        as_participant: a.ai_id,
        spec,
    };
    to_session(&hub, &credential, a.session_id.as_deref(), command).await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ChangesQuery {
    session_id: Option<String>,
    file: Option<String>,
    ai: Option<String>,
    since: Option<i64>,
    limit: Option<i64>,
    with_diff: Option<bool>,
}

/// `GET /mcp/collaborate/changes?file=&ai=&since=&limit=&withDiff=`: the ledger (a file's
/// history with `file` and `withDiff=true`).
async fn changes(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    q: web::Query<ChangesQuery>,
) -> Result<HttpResponse> {
    let q = q.into_inner();
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(HubError::invalid(
            "limit",
            "limit must be between 1 and 200",
        ));
    }
    let command = ListChanges {
        credential: credential.clone(),
        query: ChangeQuery {
            file: q.file,
            ai_id: q.ai,
            since: q.since,
            limit,
            with_diff: q.with_diff.unwrap_or(false),
        },
    };
    to_session(&hub, &credential, q.session_id.as_deref(), command).await
}

/// Sends `command` to the request's session and answers its reply as JSON.
async fn to_session<M, R>(
    hub: &Addr<Hub>,
    credential: &Credential,
    session: Option<&str>,
    command: M,
) -> Result<HttpResponse>
where
    M: actix::Message<Result = Result<R>> + Send + 'static,
    R: serde::Serialize + Send + 'static,
    crate::actors::session::SessionActor: actix::Handler<M>,
{
    let session_id = session_for(hub, credential, session).await?;
    let reply = hub
        .send(ToSession {
            session_id,
            command,
        })
        .await??;
    Ok(HttpResponse::Ok().json(reply))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SendBody {
    session_id: Option<String>,
    ai_id: Option<String>,
    to: Option<String>,
    priority: Option<Priority>,
    body: Value,
    reply_to: Option<i64>,
    requires_ack: Option<bool>,
    ack_within_secs: Option<u32>,
}

/// `POST /mcp/messages/send`.
async fn send(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    JsonBody(b): JsonBody<SendBody>,
) -> Result<HttpResponse> {
    let command = SendMessage {
        credential: credential.clone(),
        as_participant: b.ai_id,
        spec: MessageSpec {
            to: b.to,
            priority: b.priority.unwrap_or(Priority::Routine),
            body: b.body,
            reply_to: b.reply_to,
            requires_ack: b.requires_ack.unwrap_or(false),
            ack_within_secs: b.ack_within_secs,
        },
    };
    to_session(&hub, &credential, b.session_id.as_deref(), command).await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReadQuery {
    session_id: Option<String>,
    ai_id: Option<String>,
    unread_only: Option<bool>,
    since: Option<i64>,
    priority: Option<Priority>,
    thread: Option<i64>,
    limit: Option<i64>,
}

/// `GET /mcp/messages?unreadOnly&since&priority&thread&limit`.
async fn read(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    q: web::Query<ReadQuery>,
) -> Result<HttpResponse> {
    let q = q.into_inner();
    let command = ReadMessages {
        credential: credential.clone(),
        as_participant: q.ai_id,
        query: message_query(q.unread_only, q.since, q.priority, q.thread, q.limit)?,
    };
    to_session(&hub, &credential, q.session_id.as_deref(), command).await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AckBody {
    session_id: Option<String>,
    ai_id: Option<String>,
    ids: Option<Vec<i64>>,
    up_to: Option<i64>,
}

/// `POST /mcp/messages/ack` `{ids}` or `{upTo}`.
async fn ack(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    JsonBody(b): JsonBody<AckBody>,
) -> Result<HttpResponse> {
    let command = AckMessages {
        credential: credential.clone(),
        as_participant: b.ai_id,
        selection: ack_selection(b.ids, b.up_to)?,
    };
    to_session(&hub, &credential, b.session_id.as_deref(), command).await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CheckpointBody {
    session_id: Option<String>,
    /// The concept's name for the participant.
    #[serde(alias = "ai")]
    ai_id: Option<String>,
    task: String,
    estimated_duration: Value,
    #[serde(default)]
    interruptible: bool,
}

/// `POST /mcp/collaborate/checkpoint` `{ai, task, estimatedDuration: "30s", interruptible}`.
async fn checkpoint_begin(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    JsonBody(b): JsonBody<CheckpointBody>,
) -> Result<HttpResponse> {
    let command = BeginCheckpoint {
        credential: credential.clone(),
        as_participant: b.ai_id,
        task: b.task,
        estimated_secs: parse_duration(&b.estimated_duration)?,
        interruptible: b.interruptible,
    };
    to_session(&hub, &credential, b.session_id.as_deref(), command).await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EndBody {
    session_id: Option<String>,
    #[serde(alias = "ai")]
    ai_id: Option<String>,
}

/// `POST /mcp/collaborate/checkpoint/end`.
async fn checkpoint_end(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    JsonBody(b): JsonBody<EndBody>,
) -> Result<HttpResponse> {
    let command = EndCheckpoint {
        credential: credential.clone(),
        as_participant: b.ai_id,
    };
    to_session(&hub, &credential, b.session_id.as_deref(), command).await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StatusBody {
    session_id: Option<String>,
    ai_id: Option<String>,
    kind: CheckKind,
    status: CheckStatus,
    summary: String,
    details: Option<Value>,
}

/// `POST /mcp/collaborate/status` `{kind, status, summary, details?}`, e.g. from a CI job.
async fn status(
    hub: web::Data<Addr<Hub>>,
    Auth(credential): Auth,
    JsonBody(b): JsonBody<StatusBody>,
) -> Result<HttpResponse> {
    let command = WriteContext {
        credential: credential.clone(),
        as_participant: b.ai_id,
        request: ContextRequest::StatusReport(StatusReport {
            kind: b.kind,
            status: b.status,
            summary: b.summary,
            details: b.details,
        }),
    };
    to_session(&hub, &credential, b.session_id.as_deref(), command).await
}
