//! Who belongs to a session and how that changes: credentials (`authorize`), joining (and who
//! may invite whom), leaving, and reissuing a token. `check_*` decides before the write,
//! `apply_*` mirrors it after the commit.

use chrono::NaiveDateTime;
use serde_json::json;

use super::DomainError;
use super::auth::{Caller, Credential, digests_match};
use super::event::{NewEvent, Priority};
use super::role::{Permission, Role};
use super::session::{
    AccessPolicy, MAX_PARTICIPANTS, Participant, ParticipantSpec, ParticipantView, Session, act_as,
};
use super::session_spec::{two_drivers, validate_participant};

/// Who may invite whom. Observers change nothing, so they invite nobody. Drivers and
/// navigators may add navigators and observers, never a driver (the driver's seat is given by
/// the operator or moves through `role` and the handshake). Whatever the newcomer gets, by its
/// role's defaults or named explicitly, must be grantable by the inviter: the permissions it
/// holds itself, `comment` (an observer's right to keep notes), and for the driver, who leads
/// the team, a navigator's defaults.
pub fn check_invitation(inviter: &Participant, spec: &ParticipantSpec) -> Result<(), DomainError> {
    if inviter.role == Role::Observer {
        return Err(DomainError::Forbidden(format!(
            "{:?} is an observer: observers cannot invite; ask the driver or a navigator",
            inviter.ai_id
        )));
    }
    if spec.role == Role::Driver {
        return Err(DomainError::Forbidden(
            "an invitation cannot make a driver: invite a navigator and pass control with the handshake, or ask the operator"
                .into(),
        ));
    }
    let mut grantable = inviter.permissions.clone();
    grantable.insert(Permission::Comment);
    if inviter.role == Role::Driver {
        grantable.extend(Role::Navigator.default_permissions());
    }
    let asked = spec
        .permissions
        .clone()
        .unwrap_or_else(|| spec.role.default_permissions());
    let beyond: Vec<&str> = asked
        .iter()
        .filter(|p| !grantable.contains(p))
        .map(|p| p.as_str())
        .collect();
    if !beyond.is_empty() {
        return Err(DomainError::Forbidden(format!(
            "{:?} cannot grant {}: name permissions it may grant (or ask the operator)",
            inviter.ai_id,
            beyond.join(", ")
        )));
    }
    Ok(())
}

impl Session {
    /// Who the credential speaks for in this session.
    pub fn authorize(
        &self,
        credential: &Credential,
        policy: &AccessPolicy,
    ) -> Result<Caller, DomainError> {
        match credential {
            Credential::None => policy.operator(credential),
            Credential::OperatorAs { session, ai_id } => {
                if *session != self.id {
                    return Err(DomainError::Forbidden(
                        "this MCP session acts in another session".into(),
                    ));
                }
                self.active(ai_id).map_err(|_| {
                    DomainError::Unauthorized(format!(
                        "{ai_id:?} is no longer a participant of this session"
                    ))
                })?;
                Ok(Caller::Participant(ai_id.clone()))
            }
            Credential::Bearer(digest) => {
                if policy.is_operator(digest) {
                    return Ok(Caller::Operator);
                }
                self.active_participants()
                    .find(|p| digests_match(&p.token_digest, digest))
                    .map(|p| Caller::Participant(p.ai_id.clone()))
                    .ok_or_else(|| {
                        DomainError::Unauthorized(
                            "the bearer token is not valid for this session (unknown, or its participant left)"
                                .into(),
                        )
                    })
            }
        }
    }

    /// May `caller` add `spec` now? If so, the participant it becomes and the event that
    /// announces it. The operator may add anyone. A participant's invitation never grants more
    /// than the inviter may grant (see [`check_invitation`]).
    pub fn check_join(
        &self,
        caller: &Caller,
        spec: &ParticipantSpec,
        token_digest: String,
        at: NaiveDateTime,
    ) -> Result<(Participant, NewEvent), DomainError> {
        validate_participant(spec)?;
        if let Caller::Participant(inviter) = caller {
            check_invitation(self.active(inviter)?, spec)?;
        }
        self.check_open("joins")?;
        if self
            .participants
            .get(&spec.ai_id)
            .is_some_and(Participant::is_active)
        {
            return Err(DomainError::conflict(
                "duplicate_participant",
                format!("{:?} is already a participant of this session", spec.ai_id),
            ));
        }
        if self.active_participants().count() >= MAX_PARTICIPANTS {
            return Err(DomainError::conflict(
                "session_full",
                format!("a session holds at most {MAX_PARTICIPANTS} participants"),
            ));
        }
        if spec.role == Role::Driver
            && let Some(d) = self.driver()
        {
            return Err(two_drivers(&d.ai_id, &spec.ai_id));
        }
        let participant = Participant::from_spec(spec, token_digest, at);
        let event = NewEvent {
            kind: "participant_joined",
            actor: Some(spec.ai_id.clone()),
            priority: Priority::Important,
            to: None,
            payload: json!({ "participant": ParticipantView::from(&participant) }),
        };
        Ok((participant, event))
    }

    pub fn apply_join(&mut self, participant: Participant, event_id: i64) {
        self.updated_at = participant.joined_at;
        self.participants
            .insert(participant.ai_id.clone(), participant);
        self.last_event_id = event_id;
    }

    /// May `ai_id` leave, asked by `caller`? Participants leave only as themselves.
    pub fn check_leave(&self, ai_id: &str, caller: &Caller) -> Result<NewEvent, DomainError> {
        act_as(caller, ai_id)?;
        let p = self.active(ai_id)?;
        Ok(NewEvent {
            kind: "participant_left",
            actor: Some(ai_id.to_owned()),
            priority: if p.role == Role::Driver {
                Priority::Critical
            } else {
                Priority::Important
            },
            payload: json!({ "aiId": ai_id, "role": p.role }),
            to: None,
        })
    }

    pub fn apply_leave(&mut self, ai_id: &str, at: NaiveDateTime, event_id: i64) {
        if let Some(p) = self.participants.get_mut(ai_id) {
            p.left_at = Some(at);
            p.checkpoint = None;
        }
        self.pending_acks.forget_participant(ai_id);
        self.updated_at = at;
        self.last_event_id = event_id;
    }

    /// May `caller` give `ai_id` a new token (the old one stops working)? The operator may for
    /// anyone, a participant for itself.
    pub fn check_reissue(&self, ai_id: &str, caller: &Caller) -> Result<NewEvent, DomainError> {
        act_as(caller, ai_id)?;
        self.active(ai_id)?;
        Ok(NewEvent {
            kind: "token_reissued",
            actor: Some(ai_id.to_owned()),
            priority: Priority::Routine,
            to: None,
            payload: json!({ "aiId": ai_id }),
        })
    }

    pub fn apply_reissue(&mut self, ai_id: &str, digest: String, at: NaiveDateTime, event_id: i64) {
        if let Some(p) = self.participants.get_mut(ai_id) {
            p.token_digest = digest;
        }
        self.updated_at = at;
        self.last_event_id = event_id;
    }
}
