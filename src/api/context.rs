//! The shared context: get, set, append, delete, sync (deep merge), diff.

use futures::future::LocalBoxFuture;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::shapes::SinceArg;
use super::{Call, Operation};
use crate::actors::messages::{
    ContextValue, ContextWritten, DiffContext, ReadContext, Since, WriteContext,
};
use crate::domain::context::{ContextOp, ContextRequest, Diff, Path};
use crate::error::HubError;

/// Sends one context write, attributed to `ai_id` when the operator names one.
pub async fn write(
    call: &Call,
    session: Option<Uuid>,
    ai_id: Option<String>,
    request: ContextRequest,
) -> Result<ContextWritten, HubError> {
    let session_id = call.session(session).await?;
    let command = WriteContext {
        credential: call.credential.clone(),
        as_participant: ai_id,
        request,
    };
    call.send(session_id, command).await
}

/// Reads one path (the whole document for the root).
pub async fn read(
    call: &Call,
    session: Option<Uuid>,
    path: Path,
) -> Result<ContextValue, HubError> {
    let session_id = call.session(session).await?;
    let credential = call.credential.clone();
    call.send(session_id, ReadContext { credential, path })
        .await
}

fn path(text: &str) -> Result<Path, HubError> {
    Ok(Path::parse(text)?)
}

/// `context_get` / `GET /mcp/context/get[/{path}]`: a value with its version.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Get {
    #[schemars(skip)]
    pub session_id: Option<Uuid>,
    /// Dotted path, e.g. activeWork.currentRefactoring.status; `\\.` escapes a dot, [n] indexes.
    #[serde(alias = "key")]
    pub path: Option<String>,
}

impl Operation for Get {
    type Output = ContextValue;

    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<ContextValue, HubError>> {
        Box::pin(async move {
            let path = path(self.path.as_deref().unwrap_or(""))?;
            read(&call, self.session_id, path).await
        })
    }
}

/// `context_set` / `POST /mcp/context/set`: replaces the value at a path.
pub type Set = ValueWrite<false>;
/// `context_append` / `POST /mcp/context/append/{path}`: appends to an array (created when
/// absent).
pub type Append = ValueWrite<true>;

/// A value written at a path: set (`APPEND = false`) or appended.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValueWrite<const APPEND: bool> {
    #[schemars(skip)]
    pub session_id: Option<Uuid>,
    #[schemars(skip)]
    pub ai_id: Option<String>,
    #[serde(alias = "key")]
    pub path: String,
    pub value: Value,
    /// `version` from context_get or your last write; fails if the path changed since.
    pub expected_version: Option<i64>,
}

/// A context write as a request, without sending it (a batch collects several): the session
/// and participant it names, and the request.
pub trait AsContextWrite {
    fn into_write(self) -> Result<Addressed, HubError>;
}

/// A request with the session (`sessionId`) and participant (`aiId`) it names, if any.
pub type Addressed = (Option<Uuid>, Option<String>, ContextRequest);

impl<const APPEND: bool> AsContextWrite for ValueWrite<APPEND> {
    fn into_write(self) -> Result<Addressed, HubError> {
        let (path, value, expected) = (path(&self.path)?, self.value, self.expected_version);
        let op = if APPEND {
            ContextOp::Append {
                path,
                value,
                expected,
            }
        } else {
            ContextOp::Set {
                path,
                value,
                expected,
            }
        };
        Ok((self.session_id, self.ai_id, ContextRequest::Op(op)))
    }
}

/// Sends what `into_write` made.
async fn send_write<W: AsContextWrite>(call: Call, w: W) -> Result<ContextWritten, HubError> {
    let (session, ai_id, request) = w.into_write()?;
    write(&call, session, ai_id, request).await
}

impl<const APPEND: bool> Operation for ValueWrite<APPEND> {
    type Output = ContextWritten;

    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<ContextWritten, HubError>> {
        Box::pin(send_write(call, self))
    }
}

/// `context_delete` / `POST /mcp/context/delete/{path}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Delete {
    #[schemars(skip)]
    pub session_id: Option<Uuid>,
    #[schemars(skip)]
    pub ai_id: Option<String>,
    #[serde(alias = "key")]
    pub path: String,
    pub expected_version: Option<i64>,
}

impl AsContextWrite for Delete {
    fn into_write(self) -> Result<Addressed, HubError> {
        let op = ContextOp::Delete {
            path: path(&self.path)?,
            expected: self.expected_version,
        };
        Ok((self.session_id, self.ai_id, ContextRequest::Op(op)))
    }
}

impl Operation for Delete {
    type Output = ContextWritten;

    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<ContextWritten, HubError>> {
        Box::pin(send_write(call, self))
    }
}

/// `context_sync` / `POST /mcp/context/sync`: deep merge, attributed to the caller.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sync {
    #[schemars(skip)]
    pub session_id: Option<Uuid>,
    #[schemars(skip)]
    pub ai_id: Option<String>,
    /// Object merged key by key into the context.
    pub updates: Map<String, Value>,
}

impl AsContextWrite for Sync {
    fn into_write(self) -> Result<Addressed, HubError> {
        let op = ContextOp::Merge {
            updates: Value::Object(self.updates),
        };
        Ok((self.session_id, self.ai_id, ContextRequest::Op(op)))
    }
}

impl Operation for Sync {
    type Output = ContextWritten;

    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<ContextWritten, HubError>> {
        Box::pin(send_write(call, self))
    }
}

/// `context_diff` / `GET /mcp/context/diff/{aiId}/{since}`: what changed since an event id or
/// an RFC 3339 time (default: the caller's own last context write), by path, then versus now.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DiffSince {
    #[schemars(skip)]
    pub session_id: Option<Uuid>,
    #[schemars(skip)]
    pub ai_id: Option<String>,
    /// Event id or RFC 3339 time (default: your last context write).
    pub since: Option<SinceArg>,
}

impl Operation for DiffSince {
    type Output = Diff;

    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<Diff, HubError>> {
        Box::pin(async move {
            let session_id = call.session(self.session_id).await?;
            let command = DiffContext {
                credential: call.credential.clone(),
                as_participant: self.ai_id,
                since: self.since.map_or(Since::MyLastWrite, |s| s.0),
            };
            call.send(session_id, command).await
        })
    }
}
