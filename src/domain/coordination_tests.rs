//! Unit tests of the role and rotation rules (`coordination`).
use super::*;
use crate::domain::session::tests_support::session_of;

fn op() -> Caller {
    Caller::Operator
}

fn me(id: &str) -> Caller {
    Caller::Participant(id.into())
}

#[test]
fn strict_mode_write_gate_follows_the_handshake() {
    let mut s = session_of(&[("claude", Role::Driver), ("gemini", Role::Navigator)]);
    assert_eq!(s.check_code_write("claude"), Ok(false));
    assert!(matches!(
        s.check_code_write("gemini"),
        Err(DomainError::WriteDenied { current_driver: Some(d), .. }) if d == "claude"
    ));
    let work = Step::WorkComplete {
        changes: vec![],
        needs_review: true,
        message: None,
    };
    let (planned, _) = s
        .check_handshake(&me("claude"), &work, crate::domain::now())
        .unwrap();
    s.coordination.handshake = planned.phase_for(7);
    assert!(matches!(
        s.check_code_write("claude"),
        Err(DomainError::WriteDenied { .. })
    ));
    s.handshake_mode = HandshakeMode::Loose;
    assert_eq!(s.check_code_write("claude"), Ok(false));
    assert_eq!(
        s.check_code_write("gemini"),
        Ok(true),
        "recorded, outside its permissions"
    );
}

#[test]
fn a_new_driver_demotes_the_old_one_at_a_boundary() {
    let mut s = session_of(&[("claude", Role::Driver), ("gemini", Role::Navigator)]);
    let planned = s
        .check_role_assign(&op(), [("gemini".to_owned(), Role::Driver)].into(), None)
        .unwrap();
    let change = planned.apply.clone().expect("no handshake open: now");
    assert_eq!(change.roles["claude"], Role::Navigator);
    assert!(s.changes_driver(&change));
    s.coordination = s
        .coordination
        .after_roles(&planned, true, crate::domain::now());
    s.apply_roles(&change);
    assert_eq!(s.driver().unwrap().ai_id, "gemini");
    assert!(
        s.participants["gemini"]
            .permissions
            .contains(&Permission::Write)
    );
    // Navigators cannot assign; the new driver can.
    assert!(
        s.check_role_assign(
            &me("claude"),
            [("claude".to_owned(), Role::Driver)].into(),
            None
        )
        .is_err()
    );
}

#[test]
fn requests_wait_for_the_driver_and_the_boundary() {
    let mut s = session_of(&[("claude", Role::Driver), ("gemini", Role::Navigator)]);
    let RoleDecision::Asked { event: asked, .. } = s
        .check_role_request(&me("gemini"), Role::Driver, None)
        .unwrap()
    else {
        panic!("a driver exists: it decides");
    };
    assert_eq!(asked.kind, ROLE_REQUESTED);
    s.coordination = s.coordination.with_request(RoleRequest {
        id: 5,
        ai_id: "gemini".into(),
        role: Role::Driver,
        reason: None,
    });
    assert!(
        s.check_role_respond(&me("gemini"), 5, true, None).is_err(),
        "not the driver"
    );
    // Mid-handshake the grant waits.
    s.coordination.handshake = Phase::AwaitingReview {
        id: 9,
        driver: "claude".into(),
        since: crate::domain::now(),
    };
    let RoleDecision::Roles(planned) = s.check_role_respond(&me("claude"), 5, true, None).unwrap()
    else {
        panic!("granted");
    };
    assert!(planned.apply.is_none() && planned.pending.is_some());
    s.coordination.pending_roles = planned.pending;
    let cancel = Step::Cancel { reason: None };
    let (_, at_boundary) = s
        .check_handshake(&me("claude"), &cancel, crate::domain::now())
        .unwrap();
    let (event, change) = at_boundary.expect("closing the handshake applies the roles");
    assert_eq!(event.kind, ROLE_CHANGED);
    assert_eq!(change.roles["gemini"], Role::Driver);
}

#[test]
fn no_rotation_is_armed_without_someone_to_swap_with() {
    for nobody in [
        [("claude", Role::Driver), ("gemini", Role::Observer)],
        [("claude", Role::Navigator), ("gemini", Role::Navigator)],
    ] {
        let mut s = session_of(&nobody);
        s.rotation_policy = RotationPolicy::Automatic;
        s.rotation_interval_secs = 60;
        assert_eq!(s.next_rotation_at(), None, "{nobody:?}");
    }
    let mut s = session_of(&[("claude", Role::Driver), ("gemini", Role::Navigator)]);
    s.rotation_policy = RotationPolicy::Automatic;
    s.rotation_interval_secs = 60;
    assert!(s.next_rotation_at().is_some());
}

#[test]
fn automatic_rotation_swaps_after_the_interval() {
    let mut s = session_of(&[
        ("claude", Role::Driver),
        ("gemini", Role::Navigator),
        ("codex", Role::Navigator),
    ]);
    s.rotation_policy = RotationPolicy::Automatic;
    s.rotation_interval_secs = 30 * 60;
    let start = s.created_at;
    assert!(
        s.rotation_due(start + chrono::TimeDelta::minutes(29))
            .is_none()
    );
    let (_, change) = s
        .rotation_due(start + chrono::TimeDelta::minutes(31))
        .unwrap();
    assert_eq!(
        change.roles["codex"],
        Role::Driver,
        "the next navigator after claude by id"
    );
    assert_eq!(change.roles["claude"], Role::Navigator);
    // Paused, nothing is armed (resuming arms it again); completed, for good: nothing is due
    // any more, so nothing is armed for it.
    assert!(s.next_rotation_at().is_some());
    s.status = crate::domain::session::SessionStatus::Paused;
    assert_eq!(s.next_rotation_at(), None);
    s.status = crate::domain::session::SessionStatus::Active;
    assert!(s.next_rotation_at().is_some());
    s.status = crate::domain::session::SessionStatus::Completed;
    assert_eq!(s.next_rotation_at(), None);
    assert!(
        s.rotation_due(start + chrono::TimeDelta::minutes(90))
            .is_none()
    );
}

#[test]
fn navigator_autonomy_bounds_a_navigators_change_in_loose_mode() {
    let mut s = session_of(&[("claude", Role::Driver), ("gemini", Role::Navigator)]);
    s.genome.genome.navigator_autonomy = 0.1; // 10 lines
    // Strict mode: the write gate alone decides (a navigator does not write at all).
    assert_eq!(s.check_navigator_change("gemini", 500), Ok(()));
    s.handshake_mode = HandshakeMode::Loose;
    assert_eq!(s.check_navigator_change("gemini", 10), Ok(()));
    let Err(DomainError::WriteDenied {
        message,
        current_driver,
    }) = s.check_navigator_change("gemini", 30)
    else {
        panic!("30 lines are over 10");
    };
    assert!(
        message.contains("30 lines")
            && message.contains("10")
            && message.contains("navigatorAutonomy 0.1")
            && message.contains("suggestion"),
        "{message}"
    );
    assert_eq!(current_driver.as_deref(), Some("claude"));
    // The driver is not bounded.
    assert_eq!(s.check_navigator_change("claude", 500), Ok(()));
    // Under 0.05 a navigator writes nothing, not even a rename (0 lines).
    s.genome.genome.navigator_autonomy = 0.0;
    assert!(matches!(
        s.check_navigator_change("gemini", 0),
        Err(DomainError::WriteDenied { message, .. }) if message.contains("do not write")
    ));
    // From 0.95: unlimited.
    s.genome.genome.navigator_autonomy = 0.95;
    assert_eq!(s.check_navigator_change("gemini", 100_000), Ok(()));
}

#[test]
fn review_requirement_applies_to_the_driver_with_a_reviewer_at_hand() {
    let mut s = session_of(&[("claude", Role::Driver), ("gemini", Role::Navigator)]);
    assert!(s.review_requirement_for("claude").is_some());
    assert!(
        s.review_requirement_for("gemini").is_none(),
        "not the driver"
    );
    s.genome.genome.review_requirement = 0.0;
    assert!(
        s.review_requirement_for("claude").is_none(),
        "no size needs review"
    );
    let alone = session_of(&[("claude", Role::Driver), ("cursor", Role::Observer)]);
    assert!(
        alone.review_requirement_for("claude").is_none(),
        "nobody could review"
    );
}
