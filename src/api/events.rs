//! `GET /mcp/events/waiting`: what waits for a participant, for the hooks of clients that run a
//! command at their turn boundaries (`collab-hub hook`). The same facts as the digest on every
//! MCP tool result (`domain::digest`), plus the digest text itself and which critical events it
//! lists in full (`listed`). Reading it records nothing: a hook that printed the digest into
//! its model's context confirms with `POST /mcp/events/shown {ids: listed}`, which stores the
//! `shown` receipts of those messages before it answers.

use futures::future::LocalBoxFuture;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Call, Operation};
use crate::actors::messages::{MarkShown, WaitingFor};
use crate::domain::digest::{DIGEST_BYTES, digest, listed};
use crate::domain::event::Event;
use crate::domain::message::MAX_ACK_IDS;
use crate::error::HubError;
use crate::store::messages::ShownVia;

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
    /// Unacknowledged critical events that still ask something of the participant, oldest
    /// first (one it already acted on is settled and left out: `domain::settle`).
    pub critical: Vec<Event>,
    /// More unacknowledged critical events, older than those listed in `critical`.
    pub older_critical: u32,
    /// Ids of the critical events `digest` lists in full: what a client that prints the digest
    /// shows its model (confirm with `POST /mcp/events/shown`).
    pub listed: Vec<i64>,
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
                listed: listed(&pending, budget),
                older_critical: pending.older_critical,
                important: count(pending.counts.important),
                routine: count(pending.counts.routine),
                partial: pending.counts.partial,
                cursor: pending.cursor,
                critical: pending.critical,
            })
        })
    }
}

/// `POST /mcp/events/shown`: the caller's client put these messages before its model (a hook
/// printed the digest that lists them, a channel notification carried them). Stores the
/// `shown` receipts (`shownTo` on the sender's view of its messages) before it answers.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Shown {
    #[schemars(skip)]
    pub session_id: Option<Uuid>,
    #[schemars(skip)]
    pub ai_id: Option<String>,
    /// Event ids of the messages shown (e.g. `listed` of `GET /mcp/events/waiting`); ids that
    /// are not messages to the caller are left out of the answer.
    pub ids: Vec<i64>,
    /// How: `hook` (default) or `channel`. (`digest` and `briefing` receipts the hub records
    /// itself.)
    pub via: Option<ShownVia>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShownView {
    /// The messages whose `shown` receipt is now stored.
    pub shown: Vec<i64>,
}

impl Operation for Shown {
    type Output = ShownView;

    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<ShownView, HubError>> {
        Box::pin(async move {
            if self.ids.is_empty() {
                return Err(HubError::invalid("ids", "name at least one message id"));
            }
            if self.ids.len() > MAX_ACK_IDS {
                return Err(HubError::invalid(
                    "ids",
                    format!("at most {MAX_ACK_IDS} ids at once"),
                ));
            }
            if self.ids.iter().any(|&id| id < 1) {
                return Err(HubError::invalid("ids", "event ids start at 1"));
            }
            let via = self.via.unwrap_or(ShownVia::Hook);
            if !matches!(via, ShownVia::Hook | ShownVia::Channel) {
                return Err(HubError::invalid(
                    "via",
                    "hook or channel (the hub records digest and briefing receipts itself)",
                ));
            }
            let session_id = call.session(self.session_id).await?;
            let command = MarkShown {
                credential: call.credential.clone(),
                as_participant: self.ai_id,
                ids: self.ids,
                via,
            };
            let shown = call.send(session_id, command).await?;
            Ok(ShownView { shown })
        })
    }
}
