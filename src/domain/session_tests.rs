use super::*;

fn spec(ps: &[(&str, Role)]) -> SessionSpec {
    super::tests_support::spec_of(ps)
}

fn session(ps: &[(&str, Role)]) -> Session {
    super::tests_support::session_of(ps)
}

fn open() -> AccessPolicy {
    AccessPolicy {
        trust_loopback: true,
        operator_digest: None,
        send_rate: SendRate::default(),
        disconnect_grace_secs: 120,
        conflict_window_secs: 600,
    }
}

#[test]
fn status_machine() {
    use SessionStatus::*;
    assert!(Active.can_become(Paused));
    assert!(Paused.can_become(Active));
    assert!(Active.can_become(Completed));
    assert!(Paused.can_become(Completed));
    assert!(!Completed.can_become(Active));
    assert!(!Completed.can_become(Paused));
    assert!(!Active.can_become(Active));
}

#[test]
fn spec_rejects_two_drivers_and_duplicates() {
    let err = spec(&[("claude", Role::Driver), ("gemini", Role::Driver)])
        .validate()
        .unwrap_err();
    assert!(matches!(
        err,
        DomainError::Conflict {
            code: "driver_taken",
            ..
        }
    ));
    let err = spec(&[("claude", Role::Driver), ("claude", Role::Navigator)])
        .validate()
        .unwrap_err();
    assert!(matches!(
        err,
        DomainError::Conflict {
            code: "duplicate_participant",
            ..
        }
    ));
}

#[test]
fn spec_checks_interval_and_metadata() {
    let mut s = spec(&[]);
    s.save_interval = 5;
    assert!(s.validate().is_err());
    s.save_interval = 0;
    assert!(s.validate().is_ok());
    s.metadata = json!([1]);
    assert!(s.validate().is_err());
}

#[test]
fn join_rules() {
    let mut s = session(&[("claude", Role::Driver)]);
    let dup = ParticipantSpec {
        ai_id: "claude".into(),
        role: Role::Observer,
        permissions: None,
        skills: Vec::new(),
    };
    let now = crate::domain::now();
    assert!(matches!(
        s.check_join(&Caller::Operator, &dup, "d".into(), now),
        Err(DomainError::Conflict {
            code: "duplicate_participant",
            ..
        })
    ));
    let driver = ParticipantSpec {
        ai_id: "gemini".into(),
        role: Role::Driver,
        permissions: None,
        skills: Vec::new(),
    };
    assert!(matches!(
        s.check_join(&Caller::Operator, &driver, "d".into(), now),
        Err(DomainError::Conflict {
            code: "driver_taken",
            ..
        })
    ));
    let nav = ParticipantSpec {
        ai_id: "gemini".into(),
        role: Role::Navigator,
        permissions: None,
        skills: Vec::new(),
    };
    let (p, ev) = s
        .check_join(&Caller::Operator, &nav, "d".into(), now)
        .unwrap();
    assert_eq!(ev.kind, "participant_joined");
    assert_eq!(p.permissions, Role::Navigator.default_permissions());
    s.apply_join(p, 2);
    assert_eq!(s.active_participants().count(), 2);
    assert_eq!(s.last_event_id, 2);
}

#[test]
fn invitations_grant_no_more_than_the_inviter_holds() {
    let s = session(&[
        ("claude", Role::Driver),
        ("gemini", Role::Navigator),
        ("cursor", Role::Observer),
    ]);
    let spec = |role, permissions: Option<&[Permission]>| ParticipantSpec {
        ai_id: "codex".into(),
        role,
        permissions: permissions.map(|p| p.iter().copied().collect()),
        skills: Vec::new(),
    };
    let by = |id: &str| Caller::Participant(id.into());
    let now = crate::domain::now();
    let allowed = |caller: &Caller, spec: &ParticipantSpec| {
        s.check_join(caller, spec, "d".into(), now).is_ok()
    };
    use Permission::*;
    // Observers invite nobody.
    assert!(!allowed(&by("cursor"), &spec(Role::Observer, None)));
    // Nobody but the operator makes a driver (here the seat is free of a second one only
    // for the operator's check to say driver_taken instead).
    assert!(!allowed(&by("gemini"), &spec(Role::Driver, None)));
    // Navigators and the driver add navigators and observers with their defaults.
    for inviter in ["claude", "gemini"] {
        assert!(allowed(&by(inviter), &spec(Role::Navigator, None)));
        assert!(allowed(&by(inviter), &spec(Role::Observer, None)));
    }
    // Explicit permissions: only what the inviter may grant.
    assert!(!allowed(
        &by("gemini"),
        &spec(Role::Navigator, Some(&[Read, Write]))
    ));
    assert!(allowed(
        &by("claude"),
        &spec(Role::Navigator, Some(&[Read, Write]))
    ));
    assert!(allowed(
        &by("claude"),
        &spec(Role::Observer, Some(&[Review]))
    ));
    assert!(allowed(
        &by("gemini"),
        &spec(Role::Observer, Some(&[Review]))
    ));
    // A navigator restricted to read cannot hand out a navigator's defaults.
    let mut restricted = s.clone();
    restricted
        .participants
        .get_mut("gemini")
        .unwrap()
        .permissions = [Read].into();
    let by_restricted = |spec: &ParticipantSpec| {
        restricted
            .check_join(&by("gemini"), spec, "d".into(), now)
            .is_ok()
    };
    assert!(!by_restricted(&spec(Role::Navigator, None)));
    assert!(by_restricted(&spec(Role::Navigator, Some(&[Read]))));
    assert!(by_restricted(&spec(Role::Observer, None)));
    assert!(!by_restricted(&spec(Role::Observer, Some(&[Review]))));
    // The operator may add anyone.
    assert!(allowed(
        &Caller::Operator,
        &spec(Role::Navigator, Some(&[Write]))
    ));
}

#[test]
fn leave_then_rejoin() {
    let mut s = session(&[("claude", Role::Driver), ("gemini", Role::Navigator)]);
    let me = Caller::Participant("gemini".into());
    assert!(matches!(
        s.check_leave("claude", &me),
        Err(DomainError::Forbidden(_))
    ));
    s.check_leave("gemini", &me).unwrap();
    s.apply_leave("gemini", crate::domain::now(), 2);
    assert!(s.check_leave("gemini", &Caller::Operator).is_err());
    // Its token no longer works.
    let cred = Credential::Bearer("digest-gemini".into());
    assert!(matches!(
        s.authorize(&cred, &open()),
        Err(DomainError::Unauthorized(_))
    ));
    let back = ParticipantSpec {
        ai_id: "gemini".into(),
        role: Role::Observer,
        permissions: None,
        skills: Vec::new(),
    };
    assert!(
        s.check_join(&Caller::Operator, &back, "d2".into(), crate::domain::now())
            .is_ok()
    );
}

#[test]
fn authorize_by_token_and_loopback() {
    let s = session(&[("claude", Role::Driver)]);
    let cred = Credential::Bearer("digest-claude".into());
    assert_eq!(
        s.authorize(&cred, &open()).unwrap(),
        Caller::Participant("claude".into())
    );
    assert_eq!(
        s.authorize(&Credential::None, &open()).unwrap(),
        Caller::Operator
    );
    let closed = AccessPolicy {
        trust_loopback: false,
        operator_digest: Some("op".into()),
        send_rate: SendRate::default(),
        disconnect_grace_secs: 120,
        conflict_window_secs: 600,
    };
    assert!(matches!(
        s.authorize(&Credential::None, &closed),
        Err(DomainError::Unauthorized(_))
    ));
    assert_eq!(
        s.authorize(&Credential::Bearer("op".into()), &closed)
            .unwrap(),
        Caller::Operator
    );
    assert!(matches!(
        closed.operator(&cred),
        Err(DomainError::Forbidden(_))
    ));
}

#[test]
fn observers_cannot_change_status_and_completed_is_final() {
    let mut s = session(&[("claude", Role::Driver), ("cursor", Role::Observer)]);
    let obs = Caller::Participant("cursor".into());
    assert!(matches!(
        s.check_status(SessionStatus::Paused, &obs),
        Err(DomainError::Forbidden(_))
    ));
    let drv = Caller::Participant("claude".into());
    s.check_status(SessionStatus::Completed, &drv).unwrap();
    s.apply_status(SessionStatus::Completed, crate::domain::now(), 2);
    let err = s.check_status(SessionStatus::Active, &drv).unwrap_err();
    assert!(matches!(
        err,
        DomainError::Conflict {
            code: "invalid_transition",
            ..
        }
    ));
    let late = ParticipantSpec {
        ai_id: "codex".into(),
        role: Role::Observer,
        permissions: None,
        skills: Vec::new(),
    };
    assert!(matches!(
        s.check_join(&Caller::Operator, &late, "d".into(), crate::domain::now()),
        Err(DomainError::Conflict {
            code: "session_completed",
            ..
        })
    ));
}

#[test]
fn views_never_show_digests() {
    let s = session(&[("claude", Role::Driver)]);
    let text = serde_json::to_string(&s.view()).unwrap();
    assert!(!text.contains("digest-claude"));
    assert!(text.contains("\"driver\":\"claude\""));
}
