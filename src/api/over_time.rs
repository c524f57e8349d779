//! Working over time: resume (a briefing under a token budget) and save (a whole-session
//! snapshot). One grouped type, `SessionArgs`: the MCP `session` tool takes `action`, the REST
//! routes `/mcp/session/{resume,save}` supply it, so both parse the same fields.

use futures::future::LocalBoxFuture;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Call, Operation};
use crate::actors::messages::{Exported, Resume as ResumeCommand, Resumed, SaveSession, Saved};
use crate::api::export::Export;
use crate::domain::briefing::Strategy;
use crate::domain::export::Format;
use crate::domain::snapshot::{Includes, Trigger};
use crate::error::HubError;

/// `POST /mcp/session/resume`: the context and a briefing on what happened since you were last
/// active. Reading it marks nothing read or acknowledged.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resume {
    #[schemars(skip)]
    pub session_id: Option<Uuid>,
    /// Who is briefed (the concept's shape; default: the caller).
    #[schemars(skip)]
    pub participant: Option<String>,
    pub strategy: Option<Strategy>,
    pub max_tokens: Option<usize>,
    pub load_messages: Option<i64>,
    #[serde(alias = "reconstructContext")]
    pub include_context: Option<bool>,
}

impl Operation for Resume {
    type Output = Resumed;

    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<Resumed, HubError>> {
        Box::pin(async move {
            if let Some(n) = self.load_messages
                && !(0..=200).contains(&n)
            {
                return Err(HubError::invalid("loadMessages", "between 0 and 200"));
            }
            let session_id = call.session(self.session_id).await?;
            let command = ResumeCommand {
                credential: call.credential.clone(),
                ai_id: self.participant,
                strategy: self.strategy,
                max_tokens: self.max_tokens,
                load_messages: self.load_messages,
                include_context: self.include_context.unwrap_or(true),
            };
            call.send(session_id, command).await
        })
    }
}

/// `POST /mcp/session/save`: snapshot the whole session now (the concept's shape).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Save {
    #[schemars(skip)]
    pub session_id: Option<Uuid>,
    pub trigger: Option<Trigger>,
    pub include_context: Option<bool>,
    pub include_messages: Option<bool>,
    pub include_changes: Option<bool>,
}

impl Operation for Save {
    type Output = Saved;

    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<Saved, HubError>> {
        Box::pin(async move {
            let session_id = call.session(self.session_id).await?;
            let command = SaveSession {
                credential: call.credential.clone(),
                trigger: self.trigger.unwrap_or(Trigger::Manual),
                includes: Includes {
                    context: self.include_context.unwrap_or(true),
                    messages: self.include_messages.unwrap_or(true),
                    changes: self.include_changes.unwrap_or(true),
                },
            };
            call.send(session_id, command).await
        })
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionAction {
    Resume,
    Save,
    Export,
}

/// The MCP `session` tool: one schema for resume, save and export, so the catalogue stays small.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionArgs {
    #[schemars(skip)]
    session_id: Option<Uuid>,
    /// resume: who is briefed (the concept's shape; default: the caller).
    #[schemars(skip)]
    participant: Option<String>,
    action: SessionAction,
    /// resume; default by time away.
    strategy: Option<Strategy>,
    /// resume: token cap (bytes/4, ≥100); alerts kept.
    max_tokens: Option<usize>,
    /// resume: messages listed.
    load_messages: Option<i64>,
    /// Default true.
    #[serde(alias = "reconstructContext")]
    include_context: Option<bool>,
    /// save.
    trigger: Option<Trigger>,
    /// save; default true.
    include_messages: Option<bool>,
    include_changes: Option<bool>,
    /// export: markdown (default), json, html.
    format: Option<Format>,
    /// export: with diffs; default false.
    include_code: Option<bool>,
}

/// What the grouped tool answered.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum SessionOutput {
    Resumed(Box<Resumed>),
    Saved(Saved),
    Exported(Exported),
}

impl SessionArgs {
    /// A field the action does not take is refused, naming it.
    fn only(&self, action: &str, allowed: &[&'static str]) -> Result<(), HubError> {
        let given: [(&'static str, bool); 10] = [
            ("participant", self.participant.is_some()),
            ("strategy", self.strategy.is_some()),
            ("maxTokens", self.max_tokens.is_some()),
            ("loadMessages", self.load_messages.is_some()),
            ("includeContext", self.include_context.is_some()),
            ("trigger", self.trigger.is_some()),
            ("includeMessages", self.include_messages.is_some()),
            ("includeChanges", self.include_changes.is_some()),
            ("format", self.format.is_some()),
            ("includeCode", self.include_code.is_some()),
        ];
        match given
            .iter()
            .find(|(name, set)| *set && !allowed.contains(name))
        {
            Some((name, _)) => Err(HubError::invalid(
                *name,
                format!("{action} does not take {name}"),
            )),
            None => Ok(()),
        }
    }
}

impl Operation for SessionArgs {
    type Output = SessionOutput;

    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<SessionOutput, HubError>> {
        match self.action {
            SessionAction::Resume => {
                if let Err(e) = self.only(
                    "resume",
                    &[
                        "participant",
                        "strategy",
                        "maxTokens",
                        "loadMessages",
                        "includeContext",
                    ],
                ) {
                    return Box::pin(async move { Err(e) });
                }
                let op = Resume {
                    session_id: self.session_id,
                    participant: self.participant,
                    strategy: self.strategy,
                    max_tokens: self.max_tokens,
                    load_messages: self.load_messages,
                    include_context: self.include_context,
                };
                Box::pin(async move {
                    op.run(call)
                        .await
                        .map(|r| SessionOutput::Resumed(Box::new(r)))
                })
            }
            SessionAction::Save => {
                if let Err(e) = self.only(
                    "save",
                    &[
                        "trigger",
                        "includeContext",
                        "includeMessages",
                        "includeChanges",
                    ],
                ) {
                    return Box::pin(async move { Err(e) });
                }
                let op = Save {
                    session_id: self.session_id,
                    trigger: self.trigger,
                    include_context: self.include_context,
                    include_messages: self.include_messages,
                    include_changes: self.include_changes,
                };
                Box::pin(async move { op.run(call).await.map(SessionOutput::Saved) })
            }
            SessionAction::Export => {
                if let Err(e) = self.only("export", &["format", "includeCode"]) {
                    return Box::pin(async move { Err(e) });
                }
                let op = Export {
                    session_id: self.session_id,
                    format: self.format,
                    include_code: self.include_code,
                };
                Box::pin(async move { op.run(call).await.map(SessionOutput::Exported) })
            }
        }
    }
}
