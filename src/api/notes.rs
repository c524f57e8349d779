//! What participants keep beside the shared document: working memory, per-AI notes, discoveries.

use futures::future::LocalBoxFuture;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::context::{Addressed, AsContextWrite, read, write};
use super::{Call, Operation};
use crate::domain::context::{
    ContextRequest, MEMORY_LIMIT, MemoryKind, Path, Segment, Severity, recent_memory,
};
use crate::error::HubError;

fn json_of<T: serde::Serialize>(reply: T) -> Value {
    serde_json::to_value(reply).unwrap_or(Value::Null)
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MemoryAction {
    Push,
    Recent,
    Clear,
}

/// `memory` / `/mcp/context/memory/{push,recent,clear}`: the concept's working memory.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Memory {
    #[schemars(skip)]
    pub session_id: Option<Uuid>,
    #[schemars(skip)]
    pub ai_id: Option<String>,
    pub action: MemoryAction,
    /// push: required; recent/clear: one list (default: all).
    pub kind: Option<MemoryKind>,
    /// push: the entry, e.g. "UserService" or {"file": "/src/api.ts", "line": 45}.
    pub value: Option<Value>,
    /// recent: newest entries per list, default 10.
    pub limit: Option<usize>,
}

impl AsContextWrite for Memory {
    /// push and clear; `recent` is a read and is not batched.
    fn into_write(self) -> Result<Addressed, HubError> {
        let request = match self.action {
            MemoryAction::Recent => {
                return Err(HubError::invalid(
                    "action",
                    "recent is a read; a batch holds writes",
                ));
            }
            MemoryAction::Push => ContextRequest::MemoryPush {
                kind: self.kind.ok_or_else(|| {
                    HubError::invalid("kind", "push needs kind: symbol, file or breakpoint")
                })?,
                entry: self
                    .value
                    .ok_or_else(|| HubError::invalid("value", "push needs a value"))?,
            },
            MemoryAction::Clear => ContextRequest::MemoryClear { kind: self.kind },
        };
        Ok((self.session_id, self.ai_id, request))
    }
}

impl Operation for Memory {
    type Output = Value;

    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<Value, HubError>> {
        Box::pin(async move {
            if let MemoryAction::Recent = self.action {
                let limit = self.limit.unwrap_or(10).clamp(1, MEMORY_LIMIT);
                let path = Path::parse("workingMemory")?;
                let found = read(&call, self.session_id, path).await?;
                return Ok(recent_memory(&found.value, self.kind, limit));
            }
            let (session, ai_id, request) = self.into_write()?;
            Ok(json_of(write(&call, session, ai_id, request).await?))
        })
    }
}

/// `notes` / `GET|POST /mcp/context/notes/{aiId}`: with observations or preferences, sets the
/// notes of `aiId` (your own; the operator may write anyone's); without, reads them (everyone
/// reads everyone's).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Notes {
    #[schemars(skip)]
    pub session_id: Option<Uuid>,
    /// Whose notes to read (default: yours). Setting is always your own.
    pub ai_id: Option<String>,
    pub observations: Option<Vec<String>>,
    pub preferences: Option<Vec<String>>,
}

impl Operation for Notes {
    type Output = Value;

    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<Value, HubError>> {
        Box::pin(async move {
            let whose = match self.ai_id {
                Some(id) => id,
                None => {
                    call.identify()
                        .await
                        .map_err(|_| HubError::invalid("aiId", "name whose notes (aiId)"))?
                        .ai_id
                }
            };
            if self.observations.is_none() && self.preferences.is_none() {
                let path = Path(vec![Segment::Key("aiNotes".into()), Segment::Key(whose)]);
                return Ok(json_of(read(&call, self.session_id, path).await?));
            }
            let mut notes = Map::new();
            if let Some(o) = self.observations {
                notes.insert("observations".into(), json!(o));
            }
            if let Some(p) = self.preferences {
                notes.insert("preferences".into(), json!(p));
            }
            let request = ContextRequest::Notes {
                ai_id: whose,
                notes: Value::Object(notes),
            };
            Ok(json_of(write(&call, self.session_id, None, request).await?))
        })
    }
}

/// `discovery_report` / `POST /mcp/context/discovery`: a finding for everyone; high severity is
/// announced as important, critical as critical.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Discovery {
    #[schemars(skip)]
    pub session_id: Option<Uuid>,
    #[schemars(skip)]
    pub ai_id: Option<String>,
    pub finding: String,
    /// e.g. /src/ws/handler.ts:145
    pub location: Option<String>,
    pub severity: Severity,
}

impl AsContextWrite for Discovery {
    fn into_write(self) -> Result<Addressed, HubError> {
        let request = ContextRequest::Discovery {
            finding: self.finding,
            location: self.location,
            severity: self.severity,
        };
        Ok((self.session_id, self.ai_id, request))
    }
}

impl Operation for Discovery {
    type Output = Value;

    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<Value, HubError>> {
        Box::pin(async move {
            let (session, ai_id, request) = self.into_write()?;
            Ok(json_of(write(&call, session, ai_id, request).await?))
        })
    }
}
