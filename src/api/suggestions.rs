//! `suggestion` / `/mcp/collaborate/suggestion*`: a navigator proposes, the driver resolves.

use futures::future::LocalBoxFuture;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::coordination::json as reply_json;
use super::{Call, Operation as Op};
use crate::actors::messages::{ListSuggestions, ResolveSuggestion, SubmitSuggestion};
use crate::domain::auth::Credential;
use crate::domain::ledger::ChangeSpec;
use crate::error::HubError;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum SuggestionAction {
    Submit,
    Resolve,
    List,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SuggestionArgs {
    #[schemars(skip)]
    session_id: Option<Uuid>,
    #[schemars(skip)]
    ai_id: Option<String>,
    action: SuggestionAction,
    file_path: Option<String>,
    /// Unified diff, or before + after.
    diff: Option<String>,
    before: Option<String>,
    after: Option<String>,
    reason: Option<String>,
    task_id: Option<i64>,
    /// resolve
    id: Option<i64>,
    /// resolve
    accept: Option<bool>,
    note: Option<String>,
    /// list: all, not only pending.
    all: Option<bool>,
}

/// What `suggestion` asks for (shared with REST).
pub enum SuggestionCommand {
    Submit(SubmitSuggestion),
    Resolve(ResolveSuggestion),
    List(ListSuggestions),
}

impl SuggestionArgs {
    pub fn into_command(
        self,
        credential: Credential,
        as_participant: Option<String>,
    ) -> Result<SuggestionCommand, HubError> {
        Ok(match self.action {
            SuggestionAction::Submit => SuggestionCommand::Submit(SubmitSuggestion {
                credential,
                as_participant,
                spec: ChangeSpec {
                    file_path: self
                        .file_path
                        .ok_or_else(|| HubError::invalid("filePath", "submit names the file"))?,
                    operation: None,
                    diff: self.diff,
                    before: self.before,
                    after: self.after,
                    new_path: None,
                    symbols: Vec::new(),
                    reason: self.reason,
                    lock_token: None,
                    task_id: self.task_id,
                },
                task_id: self.task_id,
            }),
            SuggestionAction::Resolve => SuggestionCommand::Resolve(ResolveSuggestion {
                credential,
                as_participant,
                id: self
                    .id
                    .ok_or_else(|| HubError::invalid("id", "resolve names the suggestion"))?,
                accept: self.accept.ok_or_else(|| {
                    HubError::invalid("accept", "resolve says accept: true or false")
                })?,
                note: self.note,
            }),
            SuggestionAction::List => SuggestionCommand::List(ListSuggestions {
                credential,
                pending_only: !self.all.unwrap_or(false),
                limit: 100,
            }),
        })
    }
}

impl Op for SuggestionArgs {
    type Output = Value;

    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<Value, HubError>> {
        Box::pin(async move {
            let session = call.session(self.session_id).await?;
            let ai_id = self.ai_id.clone();
            Ok(match self.into_command(call.credential.clone(), ai_id)? {
                SuggestionCommand::Submit(c) => reply_json(call.send(session, c).await?),
                SuggestionCommand::Resolve(c) => reply_json(call.send(session, c).await?),
                SuggestionCommand::List(c) => {
                    json!({ "suggestions": call.send(session, c).await? })
                }
            })
        })
    }
}
