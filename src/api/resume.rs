//! Working over time: `session_resume` (a briefing under a token budget).

use futures::future::LocalBoxFuture;
use schemars::JsonSchema;
use serde::Deserialize;
use uuid::Uuid;

use super::{Call, Operation};
use crate::actors::messages::{Resume as ResumeCommand, Resumed};
use crate::domain::briefing::Strategy;
use crate::error::HubError;

/// `session_resume` / `POST /mcp/session/resume`: the context and a briefing on what happened
/// since you were last active. Reading it marks nothing read or acknowledged.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resume {
    #[schemars(skip)]
    pub session_id: Option<Uuid>,
    /// Who is briefed (the concept's shape; default: the caller).
    #[schemars(skip)]
    pub participant: Option<String>,
    /// quick, standard or deep; default from your time away (<1 h quick, <1 day standard).
    pub strategy: Option<Strategy>,
    /// Cut the briefing to about this many tokens (UTF-8 bytes / 4), alerts kept; 100–100000.
    pub max_tokens: Option<usize>,
    /// Messages to list (default: 10, 50 or 100 by strategy).
    pub load_messages: Option<i64>,
    /// Include the shared context (default true).
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
