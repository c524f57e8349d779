//! `dispute` / `/mcp/collaborate/dispute*`: the conflict resolution protocol. A driver or
//! navigator raises a dispute on a review, suggestion or change; the session's
//! `conflictResolution` gene says who settles it (`domain::dispute`).

use futures::future::LocalBoxFuture;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::coordination::json as reply_json;
use super::{Call, Operation as Op};
use crate::actors::messages::{ListDisputes, RaiseDispute, ResolveDispute, VoteDispute};
use crate::domain::auth::Credential;
use crate::domain::dispute::{Outcome, Raise, Target};
use crate::error::HubError;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum DisputeAction {
    Raise,
    Resolve,
    Vote,
    List,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DisputeArgs {
    #[schemars(skip)]
    session_id: Option<Uuid>,
    #[schemars(skip)]
    ai_id: Option<String>,
    action: DisputeAction,
    /// raise: {kind: review|suggestion|change, id}.
    on: Option<Target>,
    /// raise
    reason: Option<String>,
    /// raise: what to do instead.
    proposal: Option<String>,
    /// resolve, vote
    dispute_id: Option<i64>,
    /// resolve
    outcome: Option<Outcome>,
    /// vote (consensus sessions)
    vote: Option<Outcome>,
    /// resolve
    note: Option<String>,
}

/// What `dispute` asks for (shared with REST).
pub enum DisputeCommand {
    Raise(RaiseDispute),
    Resolve(ResolveDispute),
    Vote(VoteDispute),
    List(ListDisputes),
}

impl DisputeArgs {
    pub fn into_command(
        self,
        credential: Credential,
        as_participant: Option<String>,
    ) -> Result<DisputeCommand, HubError> {
        let dispute_id = |action: &str| {
            self.dispute_id.ok_or_else(|| {
                HubError::invalid(
                    "disputeId",
                    format!("{action} names the dispute: disputeId"),
                )
            })
        };
        Ok(match self.action {
            DisputeAction::Raise => DisputeCommand::Raise(RaiseDispute {
                credential,
                as_participant,
                raise: Raise {
                    on: self.on.ok_or_else(|| {
                        HubError::invalid("on", "raise names what is disputed: on {kind, id}")
                    })?,
                    reason: self
                        .reason
                        .ok_or_else(|| HubError::invalid("reason", "raise says why: reason"))?,
                    proposal: self.proposal,
                },
            }),
            DisputeAction::Resolve => DisputeCommand::Resolve(ResolveDispute {
                credential,
                as_participant,
                dispute_id: dispute_id("resolve")?,
                outcome: self.outcome.ok_or_else(|| {
                    HubError::invalid("outcome", "resolve says outcome: accept or reject")
                })?,
                note: self.note,
            }),
            DisputeAction::Vote => DisputeCommand::Vote(VoteDispute {
                credential,
                as_participant,
                dispute_id: dispute_id("vote")?,
                vote: self
                    .vote
                    .ok_or_else(|| HubError::invalid("vote", "vote says accept or reject"))?,
            }),
            DisputeAction::List => DisputeCommand::List(ListDisputes { credential }),
        })
    }
}

impl Op for DisputeArgs {
    type Output = Value;

    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<Value, HubError>> {
        Box::pin(async move {
            let session = call.session(self.session_id).await?;
            let ai_id = self.ai_id.clone();
            Ok(match self.into_command(call.credential.clone(), ai_id)? {
                DisputeCommand::Raise(c) => reply_json(call.send(session, c).await?),
                DisputeCommand::Resolve(c) => reply_json(call.send(session, c).await?),
                DisputeCommand::Vote(c) => reply_json(call.send(session, c).await?),
                DisputeCommand::List(c) => json!({ "disputes": call.send(session, c).await? }),
            })
        })
    }
}
