//! The conflict resolution protocol (concept, "Conflict Resolution Protocol"): a participant
//! raises a `dispute` on a review, a suggestion or a change; the session's
//! `conflictResolution` gene says who settles it (the driver, the navigator, or a majority
//! vote of the active participants); the outcome is recorded and announced.
//!
//! Open disputes live in the session's coordination state (stored with the session, so they
//! survive a restart); a settled one leaves it, and its `dispute_resolved` event is its record.
//! Each dispute is announced once (`dispute_raised`) and settled once (`dispute_resolved`):
//! session outcomes count those two kinds (`outcome`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::DomainError;
use super::auth::Caller;
use super::event::{NewEvent, Priority};
use super::genome::ConflictResolution;
use super::role::Role;
use super::session::Session;

/// A dispute was raised.
pub const DISPUTE_RAISED: &str = "dispute_raised";
/// A participant voted on a dispute settled by consensus.
pub const DISPUTE_VOTED: &str = "dispute_voted";
/// A dispute was settled; its payload says by whom, how and the outcome.
pub const DISPUTE_RESOLVED: &str = "dispute_resolved";

/// Most open disputes a session keeps: they are rewritten with the coordination state on
/// every coordination change, so they stay bounded.
pub const MAX_OPEN: usize = 100;
/// Longest reason, proposal or note, in characters.
pub const MAX_TEXT_CHARS: usize = 1000;

/// What a dispute is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A handshake (review), by its `work_complete` event id.
    Review,
    /// A suggestion, by its id.
    Suggestion,
    /// A recorded change, by its id.
    Change,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Review => "review",
            Kind::Suggestion => "suggestion",
            Kind::Change => "change",
        }
    }
}

/// The disputed thing: handshakes, suggestions and changes are all named by event ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub kind: Kind,
    pub id: i64,
}

/// How a dispute ends (and what a vote asks for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Accept,
    Reject,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Accept => "accept",
            Outcome::Reject => "reject",
        }
    }
}

fn rule_name(rule: ConflictResolution) -> &'static str {
    match rule {
        ConflictResolution::Driver => "driver",
        ConflictResolution::Navigator => "navigator",
        ConflictResolution::Consensus => "consensus",
    }
}

/// An open dispute, as stored and as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dispute {
    /// Per session, from 1 (not an event id: the raise event carries it in its payload).
    pub dispute_id: i64,
    pub on: Target,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal: Option<String>,
    pub raised_by: String,
    /// The rule it was raised under, which settles it (the genome is fixed per session; kept
    /// with the dispute so what was announced is what applies).
    pub settled_by: ConflictResolution,
    /// Consensus: each voter's current vote (a second vote replaces the first).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub votes: BTreeMap<String, Outcome>,
}

/// The session's open disputes, oldest first, and the last dispute id handed out.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Disputes {
    pub last_id: i64,
    pub open: Vec<Dispute>,
}

impl Disputes {
    /// Nothing open and nothing ever raised: left out of the stored and shown state.
    pub fn is_empty(&self) -> bool {
        self.last_id == 0 && self.open.is_empty()
    }

    pub fn get(&self, id: i64) -> Option<&Dispute> {
        self.open.iter().find(|d| d.dispute_id == id)
    }
}

/// A raise as asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Raise {
    pub on: Target,
    pub reason: String,
    pub proposal: Option<String>,
}

/// What a dispute command comes to: the events to append (in order, in one commit) and the
/// open disputes after them.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub events: Vec<NewEvent>,
    pub next: Disputes,
    pub dispute_id: i64,
    /// Settled by this command (a resolve, or a vote that made a majority).
    pub outcome: Option<Outcome>,
    /// Consensus: the votes counted and how many agreeing votes settle it.
    pub votes: BTreeMap<String, Outcome>,
    pub needed: usize,
}

fn check_text(field: &'static str, text: &str, required: bool) -> Result<(), DomainError> {
    let chars = text.chars().count();
    if required && text.trim().is_empty() {
        return Err(DomainError::invalid(
            field,
            format!("{field}: say why (1..={MAX_TEXT_CHARS} characters)"),
        ));
    }
    if chars > MAX_TEXT_CHARS {
        return Err(DomainError::invalid(
            field,
            format!("{field}: at most {MAX_TEXT_CHARS} characters ({chars} given)"),
        ));
    }
    Ok(())
}

/// The start of a reason, for a summary (the payload carries it whole: said once in full).
fn gist(text: &str) -> String {
    const CHARS: usize = 80;
    let text = text.trim();
    match text.char_indices().nth(CHARS) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// A strict majority of `eligible` voters.
pub fn needed(eligible: usize) -> usize {
    eligible / 2 + 1
}

/// The outcome `votes` decide among `eligible` voters, if any (votes of others do not count).
pub fn tally(
    votes: &BTreeMap<String, Outcome>,
    eligible: &[String],
) -> (BTreeMap<String, Outcome>, Option<Outcome>) {
    let counted: BTreeMap<String, Outcome> = votes
        .iter()
        .filter(|(who, _)| eligible.contains(who))
        .map(|(w, v)| (w.clone(), *v))
        .collect();
    let need = needed(eligible.len());
    let decided = [Outcome::Accept, Outcome::Reject]
        .into_iter()
        .find(|o| counted.values().filter(|v| *v == o).count() >= need);
    (counted, decided)
}

impl Session {
    /// The active participants with `role`, by id.
    fn with_role(&self, role: Role) -> Vec<String> {
        self.active_participants()
            .filter(|p| p.role == role)
            .map(|p| p.ai_id.clone())
            .collect()
    }

    /// Who settles a dispute under `rule` now: the driver, the navigators, or the voters (the
    /// driver and navigators).
    pub fn dispute_settlers(&self, rule: ConflictResolution) -> Vec<String> {
        match rule {
            ConflictResolution::Driver => self.with_role(Role::Driver),
            ConflictResolution::Navigator => self.with_role(Role::Navigator),
            ConflictResolution::Consensus => self
                .active_participants()
                .filter(|p| p.role != Role::Observer)
                .map(|p| p.ai_id.clone())
                .collect(),
        }
    }

    /// The refusal that says who settles disputes under `rule`.
    fn not_yours(&self, rule: ConflictResolution, id: i64) -> DomainError {
        let names = |ids: Vec<String>| {
            if ids.is_empty() {
                "nobody now".to_owned()
            } else {
                ids.join(", ")
            }
        };
        let who = match rule {
            ConflictResolution::Driver => format!(
                "the driver ({}) resolves it",
                names(self.dispute_settlers(rule))
            ),
            ConflictResolution::Navigator => format!(
                "a navigator ({}) resolves it",
                names(self.dispute_settlers(rule))
            ),
            ConflictResolution::Consensus => format!(
                "a majority vote of the driver and navigators ({}) settles it: dispute vote",
                names(self.dispute_settlers(rule))
            ),
        };
        DomainError::Forbidden(format!(
            "under this session's conflictResolution ({}), {who}; the hub operator may also resolve dispute {id}",
            rule_name(rule)
        ))
    }

    /// The participant a dispute command speaks for, who must steer (drive or navigate).
    fn disputant(&self, caller: &Caller, what: &str) -> Result<String, DomainError> {
        let Caller::Participant(me) = caller else {
            return Err(DomainError::invalid(
                "aiId",
                format!("aiId: name the participant who {what}"),
            ));
        };
        let p = self.active(me)?;
        if p.role == Role::Observer {
            return Err(DomainError::Forbidden(format!(
                "{me} is an observer; only the driver and navigators {what}"
            )));
        }
        Ok(me.clone())
    }

    fn open_dispute(&self, id: i64) -> Result<&Dispute, DomainError> {
        self.coordination.disputes.get(id).ok_or_else(|| {
            DomainError::invalid(
                "disputeId",
                format!("disputeId: no open dispute {id} (dispute list shows the open ones)"),
            )
        })
    }

    /// `caller` (the driver or a navigator) disputes `raise.on`; announced to everyone with
    /// who settles it.
    pub fn plan_dispute_raise(
        &self,
        caller: &Caller,
        raise: Raise,
    ) -> Result<Planned, DomainError> {
        self.check_writable("disputes")?;
        let me = self.disputant(caller, "raise disputes")?;
        let Raise {
            on,
            reason,
            proposal,
        } = raise;
        if on.id <= 0 || on.id > self.last_event_id {
            return Err(DomainError::invalid(
                "on.id",
                format!(
                    "on.id: {} names no {} here; ids are event ids, 1..={}",
                    on.id,
                    on.kind.as_str(),
                    self.last_event_id
                ),
            ));
        }
        check_text("reason", &reason, true)?;
        if let Some(p) = &proposal {
            check_text("proposal", p, false)?;
        }
        let current = &self.coordination.disputes;
        if current.open.len() >= MAX_OPEN {
            return Err(DomainError::conflict(
                "too_many_disputes",
                format!("{MAX_OPEN} disputes are open; settle some first (dispute list)"),
            ));
        }
        let rule = self.genome.genome.resolver();
        let id = current.last_id + 1;
        let settlers = self.dispute_settlers(rule);
        let how = match rule {
            ConflictResolution::Consensus => "majority vote (dispute vote)".to_owned(),
            _ if settlers.is_empty() => {
                format!("the {} (none active: the operator)", rule_name(rule))
            }
            _ => format!("{} (dispute resolve)", settlers.join(", ")),
        };
        let event = NewEvent {
            kind: DISPUTE_RAISED,
            actor: Some(me.clone()),
            priority: Priority::Important,
            payload: json!({
                "disputeId": id,
                "on": on,
                "reason": reason,
                "proposal": proposal,
                "raisedBy": me,
                "settledBy": rule,
                "summary": format!("{me} disputes {} {}: {}; settled by {how}", on.kind.as_str(), on.id, gist(&reason)),
            }),
            to: None,
        };
        let mut next = current.clone();
        next.last_id = id;
        next.open.push(Dispute {
            dispute_id: id,
            on,
            reason,
            proposal,
            raised_by: me,
            settled_by: rule,
            votes: BTreeMap::new(),
        });
        Ok(Planned {
            events: vec![event],
            next,
            dispute_id: id,
            outcome: None,
            votes: BTreeMap::new(),
            needed: 0,
        })
    }

    /// Whoever the dispute's rule names (or the operator) settles dispute `id` directly.
    pub fn plan_dispute_resolve(
        &self,
        caller: &Caller,
        id: i64,
        outcome: Outcome,
        note: Option<String>,
    ) -> Result<Planned, DomainError> {
        self.check_writable("disputes")?;
        let dispute = self.open_dispute(id)?;
        let rule = dispute.settled_by;
        let by = match caller {
            Caller::Operator => None,
            Caller::Participant(me) => {
                self.active(me)?;
                let allowed = match rule {
                    ConflictResolution::Consensus => false,
                    _ => self.dispute_settlers(rule).contains(me),
                };
                if !allowed {
                    return Err(self.not_yours(rule, id));
                }
                Some(me.clone())
            }
        };
        if let Some(n) = &note {
            check_text("note", n, false)?;
        }
        let (votes, _) = tally(&dispute.votes, &self.dispute_settlers(rule));
        let settler = match by {
            Some(me) => (Some(me.clone()), me),
            None => (None, "operator".to_owned()),
        };
        let event = self.resolved_event(dispute, outcome, settler, &votes, note);
        let mut next = self.coordination.disputes.clone();
        next.open.retain(|d| d.dispute_id != id);
        Ok(Planned {
            events: vec![event],
            next,
            dispute_id: id,
            outcome: Some(outcome),
            votes,
            needed: 0,
        })
    }

    /// A driver's or navigator's vote on a consensus dispute; a strict majority of the active
    /// driver and navigators settles it in the same commit.
    pub fn plan_dispute_vote(
        &self,
        caller: &Caller,
        id: i64,
        vote: Outcome,
    ) -> Result<Planned, DomainError> {
        self.check_writable("disputes")?;
        let dispute = self.open_dispute(id)?;
        if dispute.settled_by != ConflictResolution::Consensus {
            let DomainError::Forbidden(why) = self.not_yours(dispute.settled_by, id) else {
                unreachable!("not_yours is a refusal")
            };
            return Err(DomainError::conflict(
                "not_by_vote",
                format!("dispute {id} is not settled by a vote: {why}"),
            ));
        }
        let me = self.disputant(caller, "vote on disputes")?;
        let eligible = self.dispute_settlers(ConflictResolution::Consensus);
        let mut updated = dispute.clone();
        updated.votes.insert(me.clone(), vote);
        let (votes, decided) = tally(&updated.votes, &eligible);
        let mut events = vec![NewEvent {
            kind: DISPUTE_VOTED,
            actor: Some(me.clone()),
            priority: Priority::Routine,
            payload: json!({"disputeId": id, "vote": vote, "by": me}),
            to: None,
        }];
        let mut next = self.coordination.disputes.clone();
        match decided {
            Some(outcome) => {
                let settler = (Some(me.clone()), "majority".to_owned());
                events.push(self.resolved_event(&updated, outcome, settler, &votes, None));
                next.open.retain(|d| d.dispute_id != id);
            }
            None => {
                if let Some(d) = next.open.iter_mut().find(|d| d.dispute_id == id) {
                    *d = updated;
                }
            }
        }
        Ok(Planned {
            events,
            next,
            dispute_id: id,
            outcome: decided,
            votes,
            needed: needed(eligible.len()),
        })
    }

    /// The record of a settled dispute. `actor`: who caused it (the resolver, or the deciding
    /// voter); `by`: who settled it, as the payload says it (a participant, `operator`,
    /// `majority`).
    fn resolved_event(
        &self,
        d: &Dispute,
        outcome: Outcome,
        (actor, by): (Option<String>, String),
        votes: &BTreeMap<String, Outcome>,
        note: Option<String>,
    ) -> NewEvent {
        let verb = match outcome {
            Outcome::Accept => "accepted",
            Outcome::Reject => "rejected",
        };
        NewEvent {
            kind: DISPUTE_RESOLVED,
            actor,
            priority: Priority::Important,
            payload: json!({
                "disputeId": d.dispute_id,
                "on": d.on,
                "outcome": outcome.as_str(),
                "by": by,
                "rule": d.settled_by,
                "votes": votes,
                "note": note,
                "summary": format!(
                    "dispute {} by {} on {} {} {verb} by {by}",
                    d.dispute_id, d.raised_by, d.on.kind.as_str(), d.on.id
                ),
            }),
            to: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::session::SessionStatus;
    use crate::domain::session::tests_support::session_of;

    fn session(rule: ConflictResolution) -> Session {
        let mut s = session_of(&[
            ("claude", Role::Driver),
            ("gemini", Role::Navigator),
            ("codex", Role::Navigator),
            ("cursor", Role::Observer),
        ]);
        s.genome.genome.conflict_resolution = rule;
        s.last_event_id = 10;
        s
    }

    fn who(id: &str) -> Caller {
        Caller::Participant(id.into())
    }

    fn raise(reason: &str) -> Raise {
        Raise {
            on: Target {
                kind: Kind::Change,
                id: 5,
            },
            reason: reason.into(),
            proposal: Some("keep the old cache".into()),
        }
    }

    /// Raises one dispute as gemini and applies it.
    fn raised(rule: ConflictResolution) -> Session {
        let mut s = session(rule);
        let p = s
            .plan_dispute_raise(&who("gemini"), raise("too risky"))
            .unwrap();
        s.coordination.disputes = p.next;
        s
    }

    #[test]
    fn a_raise_is_announced_with_who_settles_it() {
        let s = session(ConflictResolution::Driver);
        let p = s
            .plan_dispute_raise(&who("gemini"), raise("too risky"))
            .unwrap();
        assert_eq!(p.dispute_id, 1);
        let e = &p.events[0];
        assert_eq!(
            (e.kind, e.priority, &e.to),
            (DISPUTE_RAISED, Priority::Important, &None)
        );
        assert_eq!(e.payload["settledBy"], "driver");
        assert_eq!(e.payload["on"], json!({"kind": "change", "id": 5}));
        assert_eq!(e.payload["raisedBy"], "gemini");
        assert!(
            e.payload["summary"].as_str().unwrap().contains("claude"),
            "{}",
            e.payload
        );
        assert_eq!(p.next.open.len(), 1);
        assert_eq!(p.next.last_id, 1);
    }

    #[test]
    fn bad_raises_are_refused_with_the_field() {
        let s = session(ConflictResolution::Navigator);
        let field = |r: Result<Planned, DomainError>| match r {
            Err(DomainError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        for id in [0, -1, 11] {
            let mut r = raise("x");
            r.on.id = id;
            assert_eq!(field(s.plan_dispute_raise(&who("gemini"), r)), "on.id");
        }
        assert_eq!(
            field(s.plan_dispute_raise(&who("gemini"), raise("  "))),
            "reason"
        );
        let long = "x".repeat(MAX_TEXT_CHARS + 1);
        assert_eq!(
            field(s.plan_dispute_raise(&who("gemini"), raise(&long))),
            "reason"
        );
        assert!(
            s.plan_dispute_raise(&who("gemini"), raise(&"x".repeat(MAX_TEXT_CHARS)))
                .is_ok()
        );
        let mut r = raise("x");
        r.proposal = Some(long);
        assert_eq!(field(s.plan_dispute_raise(&who("gemini"), r)), "proposal");
        assert_eq!(
            field(s.plan_dispute_raise(&Caller::Operator, raise("x"))),
            "aiId"
        );
        assert!(matches!(
            s.plan_dispute_raise(&who("cursor"), raise("x")),
            Err(DomainError::Forbidden(_))
        ));
    }

    #[test]
    fn at_most_max_open_disputes() {
        let mut s = session(ConflictResolution::Navigator);
        for _ in 0..MAX_OPEN {
            s.coordination.disputes = s
                .plan_dispute_raise(&who("claude"), raise("x"))
                .unwrap()
                .next;
        }
        assert!(matches!(
            s.plan_dispute_raise(&who("claude"), raise("x")),
            Err(DomainError::Conflict {
                code: "too_many_disputes",
                ..
            })
        ));
    }

    #[test]
    fn a_paused_session_holds_disputes() {
        let mut s = raised(ConflictResolution::Driver);
        s.status = SessionStatus::Paused;
        assert!(s.plan_dispute_raise(&who("gemini"), raise("x")).is_err());
        assert!(
            s.plan_dispute_resolve(&who("claude"), 1, Outcome::Accept, None)
                .is_err()
        );
    }

    #[test]
    fn each_rule_names_who_resolves() {
        use ConflictResolution::*;
        let cases = [
            (Driver, "claude", true),
            (Driver, "gemini", false),
            (Navigator, "gemini", true),
            (Navigator, "codex", true),
            (Navigator, "claude", false),
            (Consensus, "claude", false),
            (Consensus, "gemini", false),
        ];
        for (rule, id, allowed) in cases {
            let s = raised(rule);
            let r = s.plan_dispute_resolve(&who(id), 1, Outcome::Reject, Some("no".into()));
            assert_eq!(r.is_ok(), allowed, "{rule:?} {id}: {r:?}");
            if let Err(e) = r {
                assert!(matches!(e, DomainError::Forbidden(_)), "{e:?}");
                let text = e.to_string();
                assert!(
                    text.contains(rule_name(rule)) && text.contains("operator"),
                    "{text}"
                );
            }
            // The operator always may.
            assert!(
                s.plan_dispute_resolve(&Caller::Operator, 1, Outcome::Accept, None)
                    .is_ok()
            );
        }
        let e = raised(Driver)
            .plan_dispute_resolve(&who("cursor"), 1, Outcome::Accept, None)
            .unwrap_err();
        assert!(matches!(e, DomainError::Forbidden(_)));
    }

    #[test]
    fn a_resolve_closes_the_dispute_and_records_it() {
        let s = raised(ConflictResolution::Driver);
        let p = s
            .plan_dispute_resolve(&who("claude"), 1, Outcome::Accept, Some("fine".into()))
            .unwrap();
        assert!(p.next.open.is_empty());
        assert_eq!(p.next.last_id, 1, "ids are never reused");
        let e = &p.events[0];
        assert_eq!(
            (e.kind, e.priority, &e.to),
            (DISPUTE_RESOLVED, Priority::Important, &None)
        );
        assert_eq!(e.payload["outcome"], "accept");
        assert_eq!(e.payload["by"], "claude");
        assert_eq!(e.payload["rule"], "driver");
        assert_eq!(e.payload["note"], "fine");
        let by_operator = s
            .plan_dispute_resolve(&Caller::Operator, 1, Outcome::Reject, None)
            .unwrap();
        assert_eq!(by_operator.events[0].payload["by"], "operator");
        assert_eq!(by_operator.events[0].actor, None);
        assert!(matches!(
            s.plan_dispute_resolve(&who("claude"), 2, Outcome::Accept, None),
            Err(DomainError::Invalid {
                field: "disputeId",
                ..
            })
        ));
    }

    #[test]
    fn a_strict_majority_of_the_steering_participants_settles_a_vote() {
        let mut s = raised(ConflictResolution::Consensus);
        // Three voters (the observer does not vote): two agreeing votes decide.
        let p = s
            .plan_dispute_vote(&who("claude"), 1, Outcome::Accept)
            .unwrap();
        assert_eq!((p.outcome, p.needed, p.events.len()), (None, 2, 1));
        assert_eq!(p.events[0].kind, DISPUTE_VOTED);
        s.coordination.disputes = p.next;
        // A second vote by the same participant replaces the first.
        let p = s
            .plan_dispute_vote(&who("claude"), 1, Outcome::Reject)
            .unwrap();
        assert_eq!(p.outcome, None);
        assert_eq!(p.votes.len(), 1);
        s.coordination.disputes = p.next;
        let p = s
            .plan_dispute_vote(&who("gemini"), 1, Outcome::Accept)
            .unwrap();
        assert_eq!(p.outcome, None, "one each: no majority");
        s.coordination.disputes = p.next;
        let p = s
            .plan_dispute_vote(&who("codex"), 1, Outcome::Reject)
            .unwrap();
        assert_eq!(p.outcome, Some(Outcome::Reject));
        let kinds: Vec<_> = p.events.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [DISPUTE_VOTED, DISPUTE_RESOLVED]);
        let resolved = &p.events[1].payload;
        assert_eq!(resolved["by"], "majority");
        assert_eq!(
            resolved["votes"],
            json!({"claude": "reject", "gemini": "accept", "codex": "reject"})
        );
        assert!(p.next.open.is_empty());
    }

    #[test]
    fn votes_are_for_consensus_and_the_steering_participants() {
        let s = raised(ConflictResolution::Navigator);
        assert!(matches!(
            s.plan_dispute_vote(&who("gemini"), 1, Outcome::Accept),
            Err(DomainError::Conflict {
                code: "not_by_vote",
                ..
            })
        ));
        let s = raised(ConflictResolution::Consensus);
        assert!(matches!(
            s.plan_dispute_vote(&who("cursor"), 1, Outcome::Accept),
            Err(DomainError::Forbidden(_))
        ));
        assert!(matches!(
            s.plan_dispute_vote(&Caller::Operator, 1, Outcome::Accept),
            Err(DomainError::Invalid { field: "aiId", .. })
        ));
    }

    #[test]
    fn the_summary_cites_only_the_start_of_a_long_reason() {
        let s = session(ConflictResolution::Driver);
        let p = s
            .plan_dispute_raise(&who("gemini"), raise(&"é".repeat(900)))
            .unwrap();
        let payload = &p.events[0].payload;
        assert_eq!(payload["reason"].as_str().unwrap().chars().count(), 900);
        assert!(payload["summary"].as_str().unwrap().chars().count() < 200);
    }

    #[test]
    fn only_current_voters_count() {
        let eligible = vec!["a".to_owned(), "b".to_owned()];
        let votes: BTreeMap<String, Outcome> = [
            ("a".to_owned(), Outcome::Accept),
            ("gone".to_owned(), Outcome::Accept),
        ]
        .into();
        let (counted, decided) = tally(&votes, &eligible);
        assert_eq!((counted.len(), decided), (1, None), "two of two needed");
        assert_eq!(needed(1), 1);
        assert_eq!(needed(2), 2);
        assert_eq!(needed(3), 2);
        assert_eq!(needed(4), 3);
    }

    #[test]
    fn disputes_round_trip_and_an_empty_set_is_left_out() {
        let s = raised(ConflictResolution::Consensus);
        let text = serde_json::to_string(&s.coordination.disputes).unwrap();
        let back: Disputes = serde_json::from_str(&text).unwrap();
        assert_eq!(back, s.coordination.disputes);
        assert!(Disputes::default().is_empty());
        let old: Disputes = serde_json::from_str("{}").unwrap();
        assert!(old.is_empty());
    }
}
