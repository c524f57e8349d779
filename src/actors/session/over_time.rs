//! Briefing a participant that comes back (`session_resume`, the `resume` prompt) and onboarding
//! one that joins: the actor supplies what it holds in memory (roles, handshake, context,
//! unacknowledged critical events), the store the counted history, the lock table the locks;
//! the domain writes the briefing.

use super::*;
use crate::actors::lock_table::LockTableActor;
use crate::actors::messages::{ProjectLocks, Resume, Resumed};
use crate::domain::briefing::{self, Facts, Me, Report, SessionFacts, Strategy, budget};
use crate::domain::monitor::MONITORING_KEY;

/// What a briefing reads from the store and the lock table, once the actor planned it.
pub(super) struct Gathering {
    store: Store,
    id: Uuid,
    table: Option<Addr<LockTableActor>>,
    window: chrono::Duration,
    facts: Facts,
    known: crate::store::briefing::Known,
    messages: i64,
}

impl Gathering {
    /// Completes the facts: the counted history, tasks, and the locks the participant holds.
    pub(super) async fn run(self) -> Result<Facts, HubError> {
        let Gathering {
            store,
            id,
            table,
            window,
            mut facts,
            known,
            messages,
        } = self;
        let me = facts.me.ai_id.clone();
        let after = facts.now - window;
        let who = me.clone();
        let (g, tasks) = store
            .read(move |c| {
                let g = crate::store::briefing::gather(c, id, &who, known, messages, after)?;
                Ok((g, crate::store::tasks::load(c, id)?))
            })
            .await?;
        let locks = match table {
            Some(t) => t.send(ProjectLocks).await?,
            None => Vec::new(),
        };
        facts.horizon = g.horizon;
        facts.last_active = g.my_last.as_ref().map(|e| e.at.naive_utc());
        facts.my_last = g.my_last;
        facts.raw = g.raw;
        facts.collaborators = g.collaborators;
        facts.my_files = g.my_files;
        facts.tasks = tasks;
        facts.messages = g.messages;
        facts.unacked = g.unacked;
        facts.discoveries = g.discoveries;
        facts.conflicts = g.conflicts;
        facts.handoffs = g.handoffs;
        facts.locks = locks
            .into_iter()
            .filter(|l| l.session_id == id && l.holder == me && l.token.is_some())
            .collect();
        Ok(facts)
    }
}

impl Handler<Resume> for SessionActor {
    type Result = ResponseFuture<Result<Resumed, HubError>>;

    fn handle(&mut self, msg: Resume, _: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        // Only a participant asking with its own token gets the briefing into its model; the
        // operator (the dashboard's "Resume briefing", a script acting for someone) only looks.
        let own = self.session().is_ok_and(|s| {
            matches!(
                self.authorized(s, &msg.credential),
                Ok(Caller::Participant(_))
            )
        });
        let planned = check_budget(msg.max_tokens)
            .and_then(|()| {
                let caller = self.caller_as(&msg.credential, msg.ai_id.as_deref())?;
                participant_of(caller)
            })
            .and_then(|ai_id| {
                let wanted = msg
                    .load_messages
                    .unwrap_or(Strategy::Deep.messages())
                    .clamp(0, 200);
                self.gathering(&ai_id, None, wanted)
            });
        // With no strategy asked for, the genome's `briefingDepth` picks it.
        let genome = self.session().map(|s| s.genome.genome.clone());
        Box::pin(async move {
            let (gathering, context) = planned?;
            let genome = genome?;
            let mut facts = gathering.run().await?;
            let (me, role) = (facts.me.ai_id.clone(), facts.me.role);
            let away = facts.now - facts.last_active.unwrap_or(facts.me.joined_at);
            let strategy = msg
                .strategy
                .unwrap_or_else(|| genome.default_resume_strategy(away.num_seconds()));
            if msg.load_messages.is_none() {
                facts.messages.truncate(strategy.messages() as usize);
            }
            let briefing = briefing::brief(&facts, strategy, msg.max_tokens);
            // The messages it lists reached the participant and are put before its model:
            // delivered and shown, not read or acknowledged.
            if own {
                let listed = briefing
                    .messages
                    .iter()
                    .filter(|m| m.from != me)
                    .map(|m| m.id)
                    .collect();
                super::stamp_briefed(&store, facts.session.id, me.clone(), listed).await;
            }
            let (context, context_omitted) = match (msg.include_context, msg.max_tokens) {
                (false, _) => (None, None),
                (true, None) => (Some(context), None),
                (true, Some(max)) => {
                    let need = budget::tokens(&context.to_string());
                    let left = max.saturating_sub(briefing.size.tokens);
                    if need <= left {
                        (Some(context), None)
                    } else {
                        (
                            None,
                            Some(format!(
                                "the context is {need} tokens, over the budget left ({left}); read parts with context_get"
                            )),
                        )
                    }
                }
            };
            Ok(Resumed {
                session_id: facts.session.id,
                participant: me,
                role,
                context,
                context_omitted,
                briefing,
            })
        })
    }
}

/// A budget outside what the hub accepts is refused before anything is read.
pub(super) fn check_budget(max_tokens: Option<usize>) -> Result<(), HubError> {
    match max_tokens {
        Some(max) if !(budget::MIN_TOKENS..=budget::MAX_TOKENS).contains(&max) => {
            Err(HubError::invalid(
                "maxTokens",
                format!(
                    "between {} and {} tokens",
                    budget::MIN_TOKENS,
                    budget::MAX_TOKENS
                ),
            ))
        }
        _ => Ok(()),
    }
}

impl SessionActor {
    /// Plans a briefing of `ai_id` (already authorized): what memory holds, and what is left
    /// to read. Also hands back the context document.
    pub(super) fn gathering(
        &self,
        ai_id: &str,
        since: Option<i64>,
        messages: i64,
    ) -> Result<(Gathering, serde_json::Value), HubError> {
        let s = self.session()?;
        let p = s.active(ai_id)?;
        let doc = s.context.document();
        let reports = doc[MONITORING_KEY]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(kind, r)| Report {
                        kind: kind.clone(),
                        failing: r["status"] == "fail",
                        summary: r["summary"].as_str().unwrap_or("").to_owned(),
                        by: r["by"].as_str().map(str::to_owned),
                        details: if r["details"].is_null() {
                            String::new()
                        } else {
                            r["details"].to_string()
                        },
                    })
                    .collect()
            })
            .unwrap_or_default();
        let facts = Facts {
            now: now(),
            me: Me {
                ai_id: ai_id.to_owned(),
                role: p.role,
                skills: p.skills.clone(),
                joined_at: p.joined_at,
            },
            session: SessionFacts {
                id: s.id,
                name: s.name.clone(),
                project: s.project.clone(),
                status: s.status,
                created_at: s.created_at,
                driver: s.driver().map(|d| d.ai_id.clone()),
                phase: s.coordination.handshake.clone(),
                focus: briefing::focus_of(doc),
            },
            horizon: 0,
            last_active: None,
            my_last: None,
            raw: Default::default(),
            collaborators: Vec::new(),
            my_files: Vec::new(),
            tasks: Vec::new(),
            messages: Vec::new(),
            unacked: Vec::new(),
            reports,
            discoveries: Vec::new(),
            conflicts: Vec::new(),
            handoffs: Vec::new(),
            // Settled alerts (the action they asked for was taken) stop leading here too.
            critical: s
                .unacked_critical(ai_id)
                .into_iter()
                .filter(|e| !self.settled.is_settled(e.id, ai_id))
                .cloned()
                .collect(),
            locks: Vec::new(),
        };
        // News: after `since` if given (0 for a newcomer), else after the newer of the
        // participant's own last event and its acknowledged cursor.
        let my_last = self.activity.last_by(ai_id);
        let horizon = since.unwrap_or_else(|| my_last.unwrap_or(0).max(p.acked_event_id));
        let (counted, counted_from) = self.activity.since(horizon, ai_id);
        let known = crate::store::briefing::Known {
            horizon,
            my_last,
            counted,
            counted_from,
            last_of: self
                .activity
                .actors()
                .filter(|(a, id)| *a != ai_id && *id > horizon)
                .map(|(a, id)| (a.to_owned(), id))
                .collect(),
            discoveries: self.activity.recent("discovery_reported", ai_id),
            conflicts: self.activity.recent("change_conflict", ai_id),
            handoffs: self.activity.recent("task_handed_off", ai_id),
        };
        let gathering = Gathering {
            store: self.store.clone(),
            id: self.id,
            table: self.lock_table.clone(),
            window: chrono::Duration::seconds(self.policy.conflict_window_secs as i64),
            facts,
            known,
            messages,
        };
        Ok((gathering, doc.clone()))
    }
}
