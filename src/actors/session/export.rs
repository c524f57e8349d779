//! Exporting the session (`session_export`): the actor authorizes and supplies what it holds in
//! memory (name, project, status, participants), the store reads the log in one read, and the
//! domain renders, off the async workers.

use super::*;
use crate::actors::messages::{ExportSession, Exported};
use crate::domain::export::{self, Head, ParticipantInfo, Timeline};

impl Handler<ExportSession> for SessionActor {
    type Result = ResponseFuture<Result<Exported, HubError>>;

    fn handle(&mut self, msg: ExportSession, _: &mut Self::Context) -> Self::Result {
        let planned = self.plan_export(&msg);
        let (store, id) = (self.store.clone(), self.id);
        let (format, include_code) = (msg.format, msg.include_code);
        Box::pin(async move {
            let (head, upto) = planned?;
            let viewer = head.viewer.clone();
            let facts = store
                .read(move |c| {
                    let timeline = Timeline::new(format, include_code);
                    crate::store::export::read(c, id, viewer.as_deref(), upto, timeline)
                })
                .await?;
            // Rendering thousands of entries is CPU work: not on the session's arbiter.
            let content = actix_web::rt::task::spawn_blocking(move || {
                export::render(export::assemble(head, facts), format)
            })
            .await
            .map_err(|e| HubError::Internal(format!("rendering the export failed: {e}")))?;
            Ok(Exported { format, content })
        })
    }
}

impl SessionActor {
    /// Who is asking (a participant sees its own view, the operator everything), what memory
    /// says about the session, and the last event the export covers.
    fn plan_export(&self, msg: &ExportSession) -> Result<(Head, i64), HubError> {
        let s = self.session()?;
        let viewer = match self.authorized(s, &msg.credential)? {
            Caller::Participant(ai_id) => Some(ai_id),
            Caller::Operator => None,
        };
        let mut people: Vec<_> = s.participants.values().collect();
        people.sort_by(|a, b| a.joined_at.cmp(&b.joined_at).then(a.ai_id.cmp(&b.ai_id)));
        let participants = people
            .into_iter()
            .map(|p| ParticipantInfo {
                ai_id: p.ai_id.clone(),
                role: p.role,
                joined_at: export::time(p.joined_at),
                left_at: p.left_at.map(export::time),
            })
            .collect();
        let head = Head {
            session_id: s.id,
            name: s.name.clone(),
            project: s.project.clone(),
            status: s.status,
            handshake_mode: s.handshake_mode,
            created_at: s.created_at,
            participants,
            viewer,
            include_code: msg.include_code,
            now: now(),
        };
        Ok((head, s.last_event_id))
    }
}
