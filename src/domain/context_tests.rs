use super::*;
use serde_json::json;

fn p(s: &str) -> Path {
    Path::parse(s).unwrap()
}

fn set(c: &mut Context, path: &str, v: Value, id: i64) {
    let change = c.plan_set(&p(path), v, None).unwrap();
    c.apply(&change, id);
}

#[test]
fn paths_parse_and_print() {
    assert_eq!(p("a.b.c").0.len(), 3);
    assert_eq!(
        p("recentDiscoveries[0].severity").0,
        vec![
            Segment::Key("recentDiscoveries".into()),
            Segment::Index(0),
            Segment::Key("severity".into()),
        ]
    );
    assert_eq!(
        p(r"versions.react\.dom").0[1],
        Segment::Key("react.dom".into())
    );
    assert_eq!(p("m[1][2]").0.len(), 3);
    assert!(p("").is_root());
    for text in [
        "a.b.c",
        r"versions.react\.dom",
        "x[0].y",
        "m[1][2]",
        r"a\[1\]",
        r"b\\c",
    ] {
        assert_eq!(p(text).to_string(), text, "round trip");
    }
    for bad in [
        "a..b", ".a", "a.", "[0]", "a[x]", "a[1]b", "a]", r"a\q", "a[", "a\u{7}",
    ] {
        assert!(Path::parse(bad).is_err(), "{bad:?} should be refused");
    }
    assert!(Path::parse("a.".repeat(40).trim_end_matches('.')).is_err());
}

#[test]
fn set_get_creates_objects_on_the_way() {
    let mut c = Context::new();
    set(
        &mut c,
        "activeWork.currentRefactoring.status",
        json!("in_progress"),
        1,
    );
    assert_eq!(
        c.get(&p("activeWork.currentRefactoring")).unwrap(),
        &json!({"status": "in_progress"})
    );
    assert!(
        c.plan_set(
            &p("activeWork.currentRefactoring.status.deeper"),
            json!(1),
            None
        )
        .is_err()
    );
    assert!(c.plan_set(&Path::root(), json!([1]), None).is_err());
}

#[test]
fn versions_cover_ancestors_and_descendants() {
    let mut c = Context::new();
    set(&mut c, "a.b", json!(1), 3);
    set(&mut c, "a.c", json!(2), 5);
    set(&mut c, "z", json!(0), 6);
    assert_eq!(c.version(&p("a")), 5);
    assert_eq!(c.version(&p("a.b")), 3);
    assert_eq!(c.version(&p("a.b.q")), 3);
    assert_eq!(c.version(&p("nope")), 0);
    // Compare-and-set: exactly one of two racers with the same expectation wins.
    let first = c.plan_set(&p("a.b"), json!(10), Some(3)).unwrap();
    c.apply(&first, 7);
    let err = c.plan_set(&p("a.b"), json!(11), Some(3)).unwrap_err();
    assert!(matches!(
        err,
        DomainError::Conflict {
            code: "version_conflict",
            ..
        }
    ));
    // Replacing the parent moves every child's version.
    set(&mut c, "a", json!({"b": 1}), 8);
    assert_eq!(c.version(&p("a.c")), 8);
    assert_eq!(
        c.versions().len(),
        2,
        "child entries folded into the parent: {:?}",
        c.versions()
    );
}

#[test]
fn append_needs_an_array() {
    let mut c = Context::new();
    let ch = c
        .plan_append(
            &p("activeWork.recentDiscoveries"),
            json!({"finding": "leak"}),
            None,
        )
        .unwrap();
    c.apply(&ch, 1);
    let ch = c
        .plan_append(
            &p("activeWork.recentDiscoveries"),
            json!({"finding": "n+1"}),
            None,
        )
        .unwrap();
    c.apply(&ch, 2);
    assert_eq!(
        c.get(&p("activeWork.recentDiscoveries[1].finding"))
            .unwrap(),
        "n+1"
    );
    set(&mut c, "s", json!("text"), 3);
    assert!(c.plan_append(&p("s"), json!(1), None).is_err());
    // Index writes: in place, or one past the end; never further.
    set(
        &mut c,
        "activeWork.recentDiscoveries[0].severity",
        json!("high"),
        4,
    );
    assert!(
        c.plan_set(&p("activeWork.recentDiscoveries[5]"), json!(1), None)
            .is_err()
    );
}

#[test]
fn delete_and_merge() {
    let mut c = Context::new();
    set(
        &mut c,
        "projectUnderstanding.conventions.testing",
        json!("Jest"),
        1,
    );
    let changes = c
        .plan_merge(&json!({"projectUnderstanding": {"newPattern": "Repository", "conventions": {"testing": "Jest"}}}))
        .unwrap();
    assert_eq!(
        changes.len(),
        1,
        "unchanged leaves are not changes: {changes:?}"
    );
    assert_eq!(
        changes[0].path.to_string(),
        "projectUnderstanding.newPattern"
    );
    for ch in &changes {
        c.apply(ch, 2);
    }
    let del = c
        .plan_delete(&p("projectUnderstanding.conventions"), None)
        .unwrap();
    c.apply(&del, 3);
    assert!(c.get(&p("projectUnderstanding.conventions")).is_none());
    assert!(matches!(
        c.plan_delete(&p("nope"), None),
        Err(DomainError::NotFound(_))
    ));
    assert!(c.plan_merge(&json!([1])).is_err());
}

#[test]
fn diff_compares_then_and_now_leaf_by_leaf() {
    let mut c = Context::new();
    set(&mut c, "keep", json!(1), 1);
    set(&mut c, "conv.style", json!("emotion"), 2);
    let mut log = Vec::new();
    let mut run = |c: &mut Context, op: ContextOp, by: &str, id: i64| {
        for ch in c.plan(&op).unwrap() {
            c.apply(&ch, id);
            log.push((ch, Some(by.to_owned()), id));
        }
    };
    let path = |s: &str| Path::parse(s).unwrap();
    run(
        &mut c,
        ContextOp::Set {
            path: path("x"),
            value: json!(1),
            expected: None,
        },
        "claude",
        3,
    );
    run(
        &mut c,
        ContextOp::Set {
            path: path("x"),
            value: json!(2),
            expected: None,
        },
        "gemini",
        4,
    );
    run(
        &mut c,
        ContextOp::Merge {
            updates: json!({"conv": {"testing": "Jest"}}),
        },
        "claude",
        5,
    );
    run(
        &mut c,
        ContextOp::Delete {
            path: path("conv"),
            expected: None,
        },
        "cursor",
        6,
    );
    run(
        &mut c,
        ContextOp::Set {
            path: path("t"),
            value: json!(1),
            expected: None,
        },
        "cursor",
        7,
    );
    run(
        &mut c,
        ContextOp::Delete {
            path: path("t"),
            expected: None,
        },
        "cursor",
        8,
    );
    let diff = diff_since(c.document(), &log);
    assert_eq!(diff.added["x"].new, Some(json!(2)));
    assert_eq!(diff.added["x"].by.as_deref(), Some("gemini"));
    // conv.testing came and went with its parent: what remains is conv as it was before.
    assert_eq!(diff.removed.keys().collect::<Vec<_>>(), ["conv"]);
    assert_eq!(diff.removed["conv"].old, Some(json!({"style": "emotion"})));
    assert_eq!(diff.removed["conv"].by.as_deref(), Some("cursor"));
    assert!(!diff.added.contains_key("t") && !diff.added.contains_key("conv.testing"));
    assert!(diff.modified.is_empty() && !diff.added.contains_key("keep"));
}
