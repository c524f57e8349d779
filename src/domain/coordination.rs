//! Who drives: role requests, assignments and rotation, the handshake's place in the session,
//! and the write gate every code change passes.
//!
//! Role changes take effect at a handshake boundary (no handshake open); one decided while a
//! handshake is open waits in `pending_roles` and is applied when the handshake closes.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::DomainError;
use super::auth::Caller;
use super::event::{NewEvent, Priority};
use super::handshake::{self, Phase, Planned, Step};
use super::role::{Permission, Role};
use super::session::caller_id;
use super::session::{HandshakeMode, RotationPolicy, Session, SessionStatus};

pub const ROLE_REQUESTED: &str = "role_requested";
pub const ROLE_REQUEST_REFUSED: &str = "role_request_refused";
pub const ROLE_CHANGED: &str = "role_changed";
pub const ROLE_CHANGE_PENDING: &str = "role_change_pending";
/// Most open role requests a session keeps (one per participant at most).
const MAX_REASON_CHARS: usize = 500;

/// The coordination state stored with the session (`sessions.coordination`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct Coordination {
    pub handshake: Phase,
    /// Open requests, one per participant, oldest first.
    pub role_requests: Vec<RoleRequest>,
    /// Role changes waiting for the handshake to close.
    pub pending_roles: Option<RoleChange>,
    /// When the current driver took the wheel (the rotation clock).
    #[serde(with = "crate::domain::utc::option", default)]
    pub role_since: Option<NaiveDateTime>,
    /// The handshake whose review-overdue alert was raised (raised once).
    pub overdue_alerted: Option<i64>,
    /// Open disputes (`dispute`); left out while none was ever raised.
    #[serde(
        default,
        skip_serializing_if = "crate::domain::dispute::Disputes::is_empty"
    )]
    pub disputes: crate::domain::dispute::Disputes,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleRequest {
    /// The `role_requested` event's id.
    pub id: i64,
    pub ai_id: String,
    pub role: Role,
    pub reason: Option<String>,
}

/// New roles by participant, with why and who decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleChange {
    pub roles: BTreeMap<String, Role>,
    pub reason: String,
    pub by: Option<String>,
}

/// What a role request or answer comes to.
#[derive(Debug, Clone, PartialEq)]
pub enum RoleDecision {
    /// Roles change (now, or at the next boundary).
    Roles(PlannedRoles),
    /// An open request for the driver to answer; recorded under its event's id.
    Asked {
        event: NewEvent,
        ai_id: String,
        role: Role,
        reason: Option<String>,
    },
    /// The driver refused open request `request`.
    Refused { event: NewEvent, request: i64 },
}

/// What the session asks a role change to do now.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRoles {
    pub event: NewEvent,
    /// Apply now (`Some`), or wait for the handshake boundary (`None`: `pending` set).
    pub apply: Option<RoleChange>,
    pub pending: Option<RoleChange>,
    /// The request this answers, to drop from the open list.
    pub answers: Option<i64>,
}

fn check_reason(reason: Option<&str>) -> Result<(), DomainError> {
    if reason.is_some_and(|r| r.chars().count() > MAX_REASON_CHARS) {
        return Err(DomainError::invalid(
            "reason",
            format!("at most {MAX_REASON_CHARS} characters"),
        ));
    }
    Ok(())
}

impl Coordination {
    /// The state after a role decision (`driver_changes`: the session gets another driver).
    pub fn after_roles(
        &self,
        plan: &PlannedRoles,
        driver_changes: bool,
        at: NaiveDateTime,
    ) -> Coordination {
        let mut c = self.clone();
        if let Some(id) = plan.answers {
            c.role_requests.retain(|r| r.id != id);
        }
        if let Some(change) = &plan.apply {
            c.apply_change(change, driver_changes, at);
        }
        if let Some(pending) = &plan.pending {
            c.pending_roles = Some(pending.clone());
        }
        c
    }

    fn apply_change(&mut self, change: &RoleChange, driver_changes: bool, at: NaiveDateTime) {
        self.role_requests
            .retain(|r| change.roles.get(&r.ai_id) != Some(&r.role));
        self.pending_roles = None;
        if driver_changes {
            self.role_since = Some(at);
        }
    }

    /// The state after a handshake step whose first event got `first_event_id`, with the roles
    /// that waited for this boundary.
    pub fn after_handshake(
        &self,
        planned: &Planned,
        first_event_id: i64,
        boundary: Option<(&RoleChange, bool)>,
        at: NaiveDateTime,
    ) -> Coordination {
        let mut c = self.clone();
        c.handshake = planned.phase_for(first_event_id);
        if let Some((change, driver_changes)) = boundary {
            c.apply_change(change, driver_changes, at);
        }
        if c.handshake.at_boundary() {
            // Whatever waited for this boundary is decided now (applied above, or no longer
            // possible, e.g. its participant left).
            c.pending_roles = None;
        }
        c
    }

    /// The state after `ai_id` left, and the event that says what that did to an open
    /// handshake: the driver leaving ends it; the reviewer leaving sends it back to await another
    /// review. `None` when nothing changes.
    pub fn after_leave(
        &self,
        ai_id: &str,
        at: NaiveDateTime,
    ) -> Option<(Coordination, Option<NewEvent>)> {
        let mut c = self.clone();
        c.role_requests.retain(|r| r.ai_id != ai_id);
        if let Some(p) = &mut c.pending_roles {
            p.roles.remove(ai_id);
            if p.roles.is_empty() {
                c.pending_roles = None;
            }
        }
        let announce = |step: &str, id: i64, summary: String| NewEvent {
            kind: handshake::HANDSHAKE_EVENT,
            actor: None,
            priority: Priority::Important,
            payload: json!({"step": step, "handshakeId": id, "reason": format!("{ai_id} left"), "summary": summary}),
            to: None,
        };
        let event = match &self.handshake {
            Phase::AwaitingReview { id, driver, .. }
            | Phase::Reviewing { id, driver, .. }
            | Phase::Reviewed { id, driver, .. }
            | Phase::ControlPassed { id, driver, .. }
                if driver == ai_id =>
            {
                c.handshake = Phase::Idle;
                Some(announce(
                    "cancel",
                    *id,
                    format!("handshake {id} ended: its driver {ai_id} left"),
                ))
            }
            Phase::Reviewing {
                id,
                driver,
                reviewer,
                ..
            }
            | Phase::Reviewed {
                id,
                driver,
                reviewer,
            } if reviewer == ai_id => {
                c.handshake = Phase::AwaitingReview {
                    id: *id,
                    driver: driver.clone(),
                    since: at,
                };
                c.overdue_alerted = None; // the review clock starts again
                Some(announce(
                    "review_abandoned",
                    *id,
                    format!("{ai_id} left mid-review: handshake {id} awaits another reviewer"),
                ))
            }
            _ => None,
        };
        (c != *self).then_some((c, event))
    }

    /// The state after an `Asked` or `Refused` decision was written as event `event_id`.
    pub fn after_request(&self, decision: &RoleDecision, event_id: i64) -> Coordination {
        match decision {
            RoleDecision::Asked {
                ai_id,
                role,
                reason,
                ..
            } => self.with_request(RoleRequest {
                id: event_id,
                ai_id: ai_id.clone(),
                role: *role,
                reason: reason.clone(),
            }),
            RoleDecision::Refused { request, .. } => {
                let mut next = self.clone();
                next.role_requests.retain(|r| r.id != *request);
                next
            }
            RoleDecision::Roles(_) => self.clone(),
        }
    }

    /// A new open request (named by its event id); it replaces the same participant's older one.
    pub fn with_request(&self, request: RoleRequest) -> Coordination {
        let mut c = self.clone();
        c.role_requests.retain(|r| r.ai_id != request.ai_id);
        c.role_requests.push(request);
        c
    }
}

impl Session {
    fn check_open_session(&self) -> Result<(), DomainError> {
        self.check_writable("the handshake, roles and the ledger")
    }

    /// Adds the implied changes (a new driver demotes the old one to navigator) and checks
    /// that everyone named is active and at most one drives.
    fn normalize_roles(
        &self,
        mut roles: BTreeMap<String, Role>,
    ) -> Result<BTreeMap<String, Role>, DomainError> {
        for id in roles.keys() {
            self.active(id)?;
        }
        if let Some((new_driver, _)) = roles.iter().find(|(_, r)| **r == Role::Driver) {
            let new_driver = new_driver.clone();
            if let Some(old) = self.driver().map(|d| d.ai_id.clone())
                && old != new_driver
            {
                roles.entry(old).or_insert(Role::Navigator);
            }
        }
        let drivers = self
            .active_participants()
            .filter(|p| roles.get(&p.ai_id).copied().unwrap_or(p.role) == Role::Driver)
            .count();
        if drivers > 1 {
            return Err(DomainError::conflict(
                "driver_taken",
                "a session has at most one driver",
            ));
        }
        roles.retain(|id, r| self.participants.get(id).is_some_and(|p| p.role != *r));
        if roles.is_empty() {
            return Err(DomainError::invalid("role", "nobody's role would change"));
        }
        Ok(roles)
    }

    /// A role change now if no handshake is open, else at its end.
    fn plan_role_change(
        &self,
        change: RoleChange,
        answers: Option<i64>,
    ) -> Result<PlannedRoles, DomainError> {
        let roles = self.normalize_roles(change.roles.clone())?;
        let change = RoleChange { roles, ..change };
        if self.coordination.handshake.at_boundary() {
            Ok(PlannedRoles {
                event: self.role_changed_event(&change),
                apply: Some(change),
                pending: None,
                answers,
            })
        } else {
            Ok(PlannedRoles {
                event: NewEvent {
                    kind: ROLE_CHANGE_PENDING,
                    actor: change.by.clone(),
                    priority: Priority::Routine,
                    payload: json!({
                        "roles": change.roles,
                        "reason": change.reason,
                        "summary": "takes effect when the open handshake closes",
                    }),
                    to: None,
                },
                apply: None,
                pending: Some(change),
                answers,
            })
        }
    }

    fn role_changed_event(&self, change: &RoleChange) -> NewEvent {
        let changes: Vec<_> = change
            .roles
            .iter()
            .map(|(id, to)| {
                let from = self.participants.get(id).map(|p| p.role);
                json!({"aiId": id, "from": from, "to": to})
            })
            .collect();
        NewEvent {
            kind: ROLE_CHANGED,
            actor: change.by.clone(),
            priority: Priority::Important,
            payload: json!({
                "changes": changes,
                "reason": change.reason,
                "summary": change.roles.iter().map(|(id, r)| format!("{id} → {r}")).collect::<Vec<_>>().join(", "),
            }),
            to: None,
        }
    }

    /// `caller` asks for `role`. Granted by the session at once when nobody drives or the
    /// rotation is automatic; otherwise the driver (or the operator) answers.
    pub fn check_role_request(
        &self,
        caller: &Caller,
        role: Role,
        reason: Option<String>,
    ) -> Result<RoleDecision, DomainError> {
        self.check_open_session()?;
        check_reason(reason.as_deref())?;
        let me = caller_id(caller)
            .ok_or_else(|| DomainError::invalid("aiId", "name the participant asking"))?;
        let p = self.active(&me)?;
        if p.role == role {
            return Err(DomainError::invalid(
                "role",
                format!("{me} already is {role}"),
            ));
        }
        let self_granting =
            self.driver().is_none() || self.rotation_policy == RotationPolicy::Automatic;
        if self_granting {
            let change = RoleChange {
                roles: [(me.clone(), role)].into(),
                reason: reason.unwrap_or_else(|| format!("{me} asked; granted by the session")),
                by: None,
            };
            return Ok(RoleDecision::Roles(self.plan_role_change(change, None)?));
        }
        Ok(RoleDecision::Asked {
            event: NewEvent {
                kind: ROLE_REQUESTED,
                actor: Some(me.clone()),
                priority: Priority::Important,
                payload: json!({
                    "aiId": me,
                    "role": role,
                    "reason": reason,
                    "summary": format!("{me} asks to become {role}: answer with role respond"),
                }),
                to: None,
            },
            ai_id: me,
            role,
            reason,
        })
    }

    /// The driver (or the operator) grants or refuses request `id`.
    pub fn check_role_respond(
        &self,
        caller: &Caller,
        id: i64,
        grant: bool,
        note: Option<String>,
    ) -> Result<RoleDecision, DomainError> {
        self.check_open_session()?;
        check_reason(note.as_deref())?;
        let Some(request) = self.coordination.role_requests.iter().find(|r| r.id == id) else {
            return Err(DomainError::invalid(
                "requestId",
                format!("no open role request {id}"),
            ));
        };
        let by = caller_id(caller);
        if let Some(me) = &by
            && self.driver().map(|d| &d.ai_id) != Some(me)
        {
            return Err(DomainError::Forbidden(format!(
                "only the driver ({}) or the operator answers role requests",
                self.driver().map_or("nobody", |d| d.ai_id.as_str())
            )));
        }
        if !grant {
            return Ok(RoleDecision::Refused {
                event: NewEvent {
                    kind: ROLE_REQUEST_REFUSED,
                    actor: by,
                    priority: Priority::Important,
                    payload: json!({"requestId": id, "aiId": request.ai_id, "role": request.role, "note": note}),
                    to: Some(request.ai_id.clone()),
                },
                request: id,
            });
        }
        let change = RoleChange {
            roles: [(request.ai_id.clone(), request.role)].into(),
            reason: note.unwrap_or_else(|| {
                request
                    .reason
                    .clone()
                    .unwrap_or_else(|| "request granted".into())
            }),
            by,
        };
        Ok(RoleDecision::Roles(
            self.plan_role_change(change, Some(id))?,
        ))
    }

    /// The operator, or the driver, sets roles directly.
    pub fn check_role_assign(
        &self,
        caller: &Caller,
        roles: BTreeMap<String, Role>,
        reason: Option<String>,
    ) -> Result<PlannedRoles, DomainError> {
        self.check_open_session()?;
        check_reason(reason.as_deref())?;
        let by = caller_id(caller);
        if let Some(me) = &by
            && self.driver().map(|d| &d.ai_id) != Some(me)
        {
            return Err(DomainError::Forbidden(format!(
                "only the driver ({}) or the operator assigns roles; ask with role request",
                self.driver().map_or("nobody", |d| d.ai_id.as_str())
            )));
        }
        let change = RoleChange {
            roles,
            reason: reason.unwrap_or_else(|| "assigned".into()),
            by,
        };
        self.plan_role_change(change, None)
    }

    /// Does `change` give the session another driver?
    pub fn changes_driver(&self, change: &RoleChange) -> bool {
        let driver = self.driver().map(|d| d.ai_id.as_str());
        change
            .roles
            .iter()
            .any(|(id, role)| *role == Role::Driver || Some(id.as_str()) == driver)
    }

    /// Applies committed roles to the participants: new role, that role's default permissions.
    /// (The coordination state moves with `Coordination::after_roles`.)
    pub fn apply_roles(&mut self, change: &RoleChange) {
        for (id, role) in &change.roles {
            if let Some(p) = self.participants.get_mut(id) {
                p.role = *role;
                p.permissions = role.default_permissions();
            }
        }
    }

    /// A handshake step by `caller`. When it closes the handshake and roles wait for that,
    /// `Planned` carries their event too (see `check_handshake`'s second value).
    pub fn check_handshake(
        &self,
        caller: &Caller,
        step: &Step,
        at: NaiveDateTime,
    ) -> Result<(Planned, Option<(NewEvent, RoleChange)>), DomainError> {
        self.check_open_session()?;
        let who = caller_id(caller)
            .ok_or_else(|| DomainError::invalid("aiId", "name the participant taking the step"))?;
        let p = self.active(&who)?;
        let driver = self.driver().map(|d| d.ai_id.as_str());
        let planned =
            handshake::plan(&self.coordination.handshake, step, &who, p.role, driver, at)?;
        let closes = planned.phase_for(0) == Phase::Idle;
        let boundary_roles = match (&self.coordination.pending_roles, closes) {
            (Some(pending), true) => {
                self.normalize_roles(pending.roles.clone())
                    .ok()
                    .map(|roles| {
                        let change = RoleChange {
                            roles,
                            ..pending.clone()
                        };
                        (self.role_changed_event(&change), change)
                    })
            }
            _ => None,
        };
        Ok((planned, boundary_roles))
    }

    /// The automatic rotation, if it is due at `now` and no handshake is open: the driver and
    /// the next navigator (by id, after the driver) swap.
    pub fn rotation_due(&self, now: NaiveDateTime) -> Option<(NewEvent, RoleChange)> {
        if self.rotation_policy != RotationPolicy::Automatic
            || self.rotation_interval_secs == 0
            || self.status != SessionStatus::Active
        {
            return None;
        }
        let since = self.coordination.role_since.unwrap_or(self.created_at);
        if now < since + chrono::TimeDelta::seconds(i64::from(self.rotation_interval_secs)) {
            return None;
        }
        let driver = self.driver()?.ai_id.clone();
        let navigators: Vec<&str> = self
            .active_participants()
            .filter(|p| p.role == Role::Navigator)
            .map(|p| p.ai_id.as_str())
            .collect();
        let next = navigators
            .iter()
            .find(|n| **n > driver.as_str())
            .or_else(|| navigators.first())?;
        let change = RoleChange {
            roles: [
                (driver, Role::Navigator),
                ((*next).to_owned(), Role::Driver),
            ]
            .into(),
            reason: format!("automatic rotation every {} s", self.rotation_interval_secs),
            by: None,
        };
        Some((self.role_changed_event(&change), change))
    }

    /// When the next rotation is due (for the timer), if rotation is automatic.
    pub fn next_rotation_at(&self) -> Option<NaiveDateTime> {
        // Only while one can happen: active (a paused session resumes, and is armed again
        // then; a completed one is final), with a driver and a navigator to swap. A timer
        // armed for one that cannot would keep the session, and its project, loaded for good.
        // Every change of status, membership or roles arms it again.
        (self.rotation_policy == RotationPolicy::Automatic
            && self.rotation_interval_secs > 0
            && self.status == crate::domain::session::SessionStatus::Active
            && self.driver().is_some()
            && self
                .active_participants()
                .any(|p| p.role == Role::Navigator))
        .then(|| {
            self.coordination.role_since.unwrap_or(self.created_at)
                + chrono::TimeDelta::seconds(i64::from(self.rotation_interval_secs))
        })
    }

    /// May `who` suggest a change? It needs the suggest permission (navigators by default).
    pub fn check_suggest(&self, who: &str) -> Result<(), DomainError> {
        self.check_open_session()?;
        let p = self.active(who)?;
        if !p.permissions.contains(&Permission::Suggest) {
            return Err(DomainError::Forbidden(format!(
                "{who} is {} without the suggest permission{}",
                p.role,
                if p.permissions.contains(&Permission::Write) {
                    "; it records changes directly"
                } else {
                    ""
                }
            )));
        }
        Ok(())
    }

    /// May `caller` resolve suggestions? The driver (who then writes the accepted change, so the
    /// write gate applies) or the operator.
    pub fn check_resolve(
        &self,
        caller: &Caller,
        accept: bool,
    ) -> Result<Option<String>, DomainError> {
        self.check_open_session()?;
        match caller {
            Caller::Operator => Ok(None),
            Caller::Participant(me) => {
                if self.driver().map(|d| &d.ai_id) != Some(me) {
                    return Err(DomainError::Forbidden(format!(
                        "only the driver ({}) or the operator resolves suggestions",
                        self.driver().map_or("nobody", |d| d.ai_id.as_str())
                    )));
                }
                if accept {
                    self.check_code_write(me)?;
                }
                Ok(Some(me.clone()))
            }
        }
    }

    /// May `who` change code now? Strict mode: only the driver, and only while it holds control
    /// (not while its work awaits review). Loose mode: anyone with the write permission; the
    /// handshake is advisory. Returns `Ok(true)` when the change is allowed but outside the
    /// author's permissions (loose mode: recorded, and alerted).
    pub fn check_code_write(&self, who: &str) -> Result<bool, DomainError> {
        self.check_open_session()?;
        let p = self.active(who)?;
        let current_driver = self.driver().map(|d| d.ai_id.clone());
        let may_write = p.permissions.contains(&Permission::Write);
        match self.handshake_mode {
            HandshakeMode::Strict => {
                if p.role != Role::Driver || !may_write {
                    return Err(DomainError::WriteDenied {
                        message: format!(
                            "Write permission denied: {who} is {} and only the driver writes in strict mode",
                            p.role
                        ),
                        current_driver,
                    });
                }
                if !self.coordination.handshake.driver_has_control() {
                    return Err(DomainError::WriteDenied {
                        message: format!(
                            "Write permission denied: control is with the review (handshake {}); writes resume after control_received",
                            self.coordination.handshake.name()
                        ),
                        current_driver,
                    });
                }
                Ok(false)
            }
            HandshakeMode::Loose => Ok(!may_write),
        }
    }

    /// The genome whose `reviewRequirement` applies to `who`'s work: `who` drives, some size
    /// requires review (r > 0), and a navigator is there to review (a lone driver is never
    /// sent to wait for a reviewer who cannot come).
    pub fn review_requirement_for(&self, who: &str) -> Option<&super::genome::Genome> {
        let genome = &self.genome.genome;
        (self.driver().is_some_and(|d| d.ai_id == who)
            && genome.review_thresholds().is_some()
            && self
                .active_participants()
                .any(|p| p.role == Role::Navigator))
        .then_some(genome)
    }

    /// Loose mode: may navigator `who` record a change touching `lines` lines? The genome's
    /// `navigatorAutonomy` bounds it (`Genome::navigator_line_limit`); past the bound the
    /// change belongs in a suggestion for the driver. Strict mode and other roles: the write
    /// gate (`check_code_write`) alone decides.
    pub fn check_navigator_change(&self, who: &str, lines: u64) -> Result<(), DomainError> {
        let p = self.active(who)?;
        if self.handshake_mode != HandshakeMode::Loose || p.role != Role::Navigator {
            return Ok(());
        }
        let genome = &self.genome.genome;
        let autonomy = genome.navigator_autonomy;
        let message = match genome.navigator_line_limit() {
            None => return Ok(()),
            Some(limit) if limit > 0 && lines <= u64::from(limit) => return Ok(()),
            Some(0) => format!(
                "Write permission denied: navigators do not write in this session (navigatorAutonomy {autonomy}); submit the change as a suggestion for the driver to apply"
            ),
            Some(limit) => format!(
                "Write permission denied: {who}'s change touches {lines} lines, over the {limit} a navigator may write per change (navigatorAutonomy {autonomy}); submit it as a suggestion for the driver to apply"
            ),
        };
        Err(DomainError::WriteDenied {
            message,
            current_driver: self.driver().map(|d| d.ai_id.clone()),
        })
    }
}

#[cfg(test)]
#[path = "coordination_tests.rs"]
mod tests;
