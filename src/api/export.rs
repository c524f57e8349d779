//! `session_export`: the session as one document (a summary, then what happened, oldest
//! first) in Markdown, HTML or JSON (`docs/export.schema.json`). Reached through the grouped
//! `over_time::SessionArgs` (`action: export`), which both the MCP `session` tool and the REST
//! route `POST /mcp/session/export` parse, as resume and save are.

use futures::future::LocalBoxFuture;
use schemars::JsonSchema;
use serde::Deserialize;
use uuid::Uuid;

use super::{Call, Operation};
use crate::actors::messages::{ExportSession, Exported};
use crate::domain::export::Format;
use crate::error::HubError;

/// `POST /mcp/session/export` (the concept's shape): a participant gets its own view, the
/// operator everything; any session status.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Export {
    #[schemars(skip)]
    pub session_id: Option<Uuid>,
    /// markdown (default), json or html.
    pub format: Option<Format>,
    /// With the diffs of recorded changes (default false).
    pub include_code: Option<bool>,
}

impl Operation for Export {
    type Output = Exported;

    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<Exported, HubError>> {
        Box::pin(async move {
            let session_id = call.session(self.session_id).await?;
            let command = ExportSession {
                credential: call.credential.clone(),
                format: self.format.unwrap_or_default(),
                include_code: self.include_code.unwrap_or(false),
            };
            call.send(session_id, command).await
        })
    }
}
