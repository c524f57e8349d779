//! Who may write what in the shared context, and the event each write records (the document
//! and its path rules are in `context`). Observers comment: they keep their own notes and
//! report discoveries, nothing else.

use serde_json::{Value, json};

use super::DomainError;
use super::auth::Caller;
use super::context::{
    Change, Context, ContextOp, ContextRequest, Path, SNAPSHOT_EVERY, Segment, Severity,
};
use super::context_log::changes_to_json;
use super::event::{NewEvent, Priority};
use super::monitor::{MONITORING_KEY, STATUS_REPORTED, stored_status};
use super::now;
use super::role::Role;
use super::session::{CONTEXT_CHANGED, Session, act_as, caller_id};

impl Session {
    /// May `caller` make this context write? Observers comment: they may keep their own notes
    /// and report discoveries, but not change the rest of the shared context. Returns the
    /// changes and the event that records (and announces) them.
    pub fn check_context(
        &self,
        caller: &Caller,
        request: &ContextRequest,
    ) -> Result<(Vec<Change>, NewEvent), DomainError> {
        self.check_writable("context writes")?;
        let observer = match caller {
            Caller::Participant(id) => self.active(id)?.role == Role::Observer,
            Caller::Operator => false,
        };
        let commenting = matches!(
            request,
            ContextRequest::Notes { .. }
                | ContextRequest::Discovery { .. }
                | ContextRequest::StatusReport(_)
        );
        if observer && !commenting {
            return Err(DomainError::Forbidden(format!(
                "{:?} is an observer: it may read the shared context, keep its notes and report discoveries, not change the rest",
                caller_id(caller).unwrap_or_default()
            )));
        }
        let mut extra = serde_json::Map::new();
        let (changes, kind, priority) = match request {
            ContextRequest::Op(op) => (self.context.plan(op)?, CONTEXT_CHANGED, Priority::Routine),
            ContextRequest::MemoryPush { kind, entry } => (
                self.context.plan_memory_push(*kind, entry.clone())?,
                "memory_pushed",
                Priority::Routine,
            ),
            ContextRequest::MemoryClear { kind } => (
                self.context.plan_memory_clear(*kind)?,
                "memory_cleared",
                Priority::Routine,
            ),
            ContextRequest::Notes { ai_id, notes } => {
                act_as(caller, ai_id)?;
                self.active(ai_id)?;
                if !notes.is_object() {
                    return Err(DomainError::invalid(
                        "notes",
                        "notes are an object, e.g. {observations: [...], preferences: [...]}",
                    ));
                }
                let updates = json!({ "aiNotes": { ai_id.as_str(): notes } });
                (
                    self.context.plan(&ContextOp::Merge { updates })?,
                    "notes_updated",
                    Priority::Routine,
                )
            }
            ContextRequest::Discovery {
                finding,
                location,
                severity,
            } => {
                if finding.trim().is_empty() {
                    return Err(DomainError::invalid("finding", "say what was found"));
                }
                let discovery = json!({
                    "by": caller_id(caller),
                    "finding": finding,
                    "location": location,
                    "severity": severity,
                    "at": now().and_utc(),
                });
                extra.insert("discovery".into(), discovery.clone());
                let op = ContextOp::Append {
                    path: Path(vec![
                        Segment::Key("activeWork".into()),
                        Segment::Key("recentDiscoveries".into()),
                    ]),
                    value: discovery,
                    expected: None,
                };
                let priority = match severity {
                    Severity::Critical => Priority::Critical,
                    Severity::High => Priority::Important,
                    _ => Priority::Routine,
                };
                (self.context.plan(&op)?, "discovery_reported", priority)
            }
            ContextRequest::StatusReport(report) => {
                report.validate()?;
                let path = Path(vec![
                    Segment::Key(MONITORING_KEY.into()),
                    Segment::Key(report.kind.as_str().into()),
                ]);
                let previous = stored_status(self.context.get(&path));
                let priority = report.priority(previous);
                let recovered = priority == Priority::Important;
                extra.insert("kind".into(), json!(report.kind));
                extra.insert("status".into(), json!(report.status));
                extra.insert("summary".into(), json!(report.summary.trim()));
                extra.insert("recovered".into(), json!(recovered));
                let op = ContextOp::Set {
                    path,
                    value: report.entry(caller_id(caller).as_deref(), recovered),
                    expected: None,
                };
                (self.context.plan(&op)?, STATUS_REPORTED, priority)
            }
        };
        crate::domain::context::check_storable(&changes)?;
        extra.insert("changes".into(), changes_to_json(&changes));
        let event = NewEvent {
            kind,
            actor: caller_id(caller),
            priority,
            to: None,
            payload: Value::Object(extra),
        };
        Ok((changes, event))
    }

    /// Applies committed context changes (from `check_context`, or replayed from the log).
    pub fn apply_context(&mut self, changes: &[Change], event_id: i64) {
        for c in changes {
            self.context.apply(c, event_id);
            self.context_bytes_since_snapshot += c.logged_bytes();
        }
        self.context_since_snapshot += 1;
        self.last_event_id = self.last_event_id.max(event_id);
    }

    /// Whether the next context write is due to be snapshotted with its change.
    pub fn snapshot_is_due(&self) -> bool {
        self.snapshot_due_after(1)
    }

    /// Whether a snapshot is due once `writes` more context writes are applied: after
    /// `SNAPSHOT_EVERY` writes since the last one, and once the changes they logged weigh half
    /// of what a snapshot stores. A small context is stored every 100 writes as before; a
    /// large one not every 100 small writes (each snapshot copies, serializes and compresses
    /// all of it while the session waits), and a restart replays at most about half a
    /// snapshot's worth of changes more.
    pub fn snapshot_due_after(&self, writes: u32) -> bool {
        self.context_since_snapshot + writes >= SNAPSHOT_EVERY
            && self.context_bytes_since_snapshot * 2 >= self.context.snapshot_size_estimate()
    }

    /// A snapshot of the context was stored: count afresh.
    pub fn snapshot_taken(&mut self) {
        self.context_since_snapshot = 0;
        self.context_bytes_since_snapshot = 0;
    }

    /// The context as it will be after `changes`, if this write is due to be snapshotted.
    pub fn snapshot_due(&self, changes: &[Change]) -> Option<(Context, Vec<Change>)> {
        self.snapshot_is_due()
            .then(|| (self.context.clone(), changes.to_vec()))
    }
}
