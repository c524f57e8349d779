//! Messages and checkpoints as session rules: who may send what to whom, receipts, and the
//! focus periods that hold routine events back (the rules themselves are in `message` and
//! `checkpoint`).

use std::collections::BTreeSet;

use chrono::NaiveDateTime;

use super::DomainError;
use super::auth::Caller;
use super::checkpoint::{self, Checkpoint, EndReason};
use super::event::NewEvent;
use super::message::{self, MessageSpec, Parent, PendingAck, PlannedMessage};
use super::session::{Session, caller_id};

impl Session {
    /// May `caller` send this message? `parent` is the message `spec.reply_to` names, as the
    /// store found it.
    pub fn check_send(
        &self,
        caller: &Caller,
        spec: MessageSpec,
        parent: Option<Parent>,
        at: NaiveDateTime,
    ) -> Result<PlannedMessage, DomainError> {
        self.check_writable("messages")?;
        let from = caller_id(caller).ok_or_else(|| {
            DomainError::invalid(
                "aiId",
                "the operator sends as a participant: name it in aiId",
            )
        })?;
        self.active(&from)?;
        message::plan_send(&from, &self.active_ids(), spec, parent, at)
    }

    /// Records a committed message that awaits acknowledgements.
    pub fn apply_send(&mut self, planned: &PlannedMessage, event_id: i64) {
        if let Some(deadline) = planned.ack_deadline {
            self.pending_acks.insert(PendingAck {
                id: event_id,
                from: planned.from.clone(),
                deadline,
                awaiting: planned.awaiting.clone(),
            });
        }
    }

    /// `by` acknowledged the messages `ids`: they no longer await it, and critical ones stop
    /// leading its tool results.
    pub fn apply_message_acks(&mut self, by: &str, ids: &[i64]) {
        for id in ids {
            self.pending_acks.acked(*id, by);
        }
        let recent: BTreeSet<i64> = self.recent_critical.iter().map(|e| e.id).collect();
        if let Some(p) = self.participants.get_mut(by) {
            p.acked_critical_ids
                .extend(ids.iter().filter(|id| recent.contains(id)));
            p.acked_critical_ids.retain(|id| recent.contains(id));
        }
    }

    /// Starts a checkpoint for the caller.
    pub fn check_checkpoint_begin(
        &self,
        caller: &Caller,
        task: &str,
        estimated_secs: u32,
        interruptible: bool,
        at: NaiveDateTime,
    ) -> Result<(Checkpoint, NewEvent), DomainError> {
        self.check_writable("checkpoints")?;
        let ai_id = caller_id(caller).ok_or_else(|| {
            DomainError::invalid("aiId", "name the participant the checkpoint is for")
        })?;
        let p = self.active(&ai_id)?;
        checkpoint::plan_begin(
            &ai_id,
            p.checkpoint.as_ref(),
            task,
            estimated_secs,
            interruptible,
            at,
        )
    }

    /// Ends `ai_id`'s checkpoint.
    pub fn check_checkpoint_end(
        &self,
        ai_id: &str,
        reason: EndReason,
        at: NaiveDateTime,
    ) -> Result<NewEvent, DomainError> {
        let p = self.active(ai_id)?;
        checkpoint::plan_end(ai_id, p.checkpoint.as_ref(), reason, at)
    }

    pub fn apply_checkpoint(&mut self, ai_id: &str, checkpoint: Option<Checkpoint>, event_id: i64) {
        if let Some(p) = self.participants.get_mut(ai_id) {
            p.checkpoint = checkpoint;
        }
        self.last_event_id = self.last_event_id.max(event_id);
    }
}
