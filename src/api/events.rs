//! `GET /mcp/events/waiting`: what waits for a participant, for the hooks of clients that run a
//! command at their turn boundaries (`collab-hub hook`). The same facts as the digest on every
//! MCP tool result (`domain::digest`), plus the digest text itself.

use futures::future::LocalBoxFuture;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Call, Operation};
use crate::actors::messages::WaitingFor;
use crate::domain::digest::{DIGEST_BYTES, digest};
use crate::domain::event::Event;
use crate::error::HubError;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Waiting {
    #[schemars(skip)]
    pub session_id: Option<Uuid>,
    #[schemars(skip)]
    pub ai_id: Option<String>,
    /// Cap the digest at this many bytes (default and most: 800).
    pub max_bytes: Option<usize>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WaitingView {
    /// What to show the model; `null` when nothing waits.
    pub digest: Option<String>,
    /// Unacknowledged critical events, oldest first.
    pub critical: Vec<Event>,
    pub important: Count,
    pub routine: Count,
    /// The participant's acknowledged cursor.
    pub cursor: i64,
    /// The cursor is older than the counted events: the counts are lower bounds.
    pub partial: bool,
}

#[derive(Debug, Serialize)]
pub struct Count {
    pub count: u32,
    /// The newest one's id (0 when none).
    pub newest: i64,
}

impl Operation for Waiting {
    type Output = WaitingView;

    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<WaitingView, HubError>> {
        Box::pin(async move {
            let budget = self.max_bytes.unwrap_or(DIGEST_BYTES);
            if !(40..=DIGEST_BYTES).contains(&budget) {
                return Err(HubError::invalid(
                    "maxBytes",
                    format!("from 40 to {DIGEST_BYTES} bytes"),
                ));
            }
            let session_id = call.session(self.session_id).await?;
            let command = WaitingFor {
                credential: call.credential.clone(),
                as_participant: self.ai_id,
            };
            let pending = call.send(session_id, command).await?;
            let count = |(count, newest): (u32, i64)| Count { count, newest };
            Ok(WaitingView {
                digest: digest(&pending, budget),
                important: count(pending.counts.important),
                routine: count(pending.counts.routine),
                partial: pending.counts.partial,
                cursor: pending.cursor,
                critical: pending.critical,
            })
        })
    }
}
