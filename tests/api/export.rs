//! `session_export`: a realistic session exported in every form, each form read back by a
//! parser (the JSON validated against the checked-in `docs/export.schema.json`, the HTML parsed
//! by Python's `html.parser`, the Markdown's headings in order); whose view it is (a
//! participant does not see a message between two others, the operator does); paused and
//! completed sessions export; bad input is a 400 naming the field.

use actix_web::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, TestDb, assert_error, both_backends, spawn_app, start_on};

both_backends!(
    every_form_reads_back_and_tells_the_session,
    a_participant_gets_its_own_view_and_the_operator_everything,
    paused_and_completed_sessions_export_and_bad_input_is_a_400,
    a_compacted_session_exports_what_is_left_and_says_so,
);

const SCRIPT: &str = "<script>alert('pwned')</script>";
const SECRET: &str = "for claude only: the staging key rotates at noon";

struct Team {
    id: String,
    claude: String,
    gemini: String,
    cursor: String,
}

/// A session with a bit of everything: context, changes with diffs (by the driver and, in
/// loose mode, a navigator), a task, a lock, a whole handshake, a role change, messages (one
/// with markup in it, one directed), a failing test.
async fn busy_session(app: &TestApp) -> Team {
    let (s, created) = app
        .post(
            "/mcp/session/create",
            &json!({"name": "Payment <Gateway> & Co", "project": "/repo/pay", "participants": ["claude", "gemini", "cursor"], "handshakeMode": "loose"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let token = |ai: &str| created["tokens"][ai].as_str().unwrap().to_owned();
    let team = Team {
        id: created["sessionId"].as_str().unwrap().to_owned(),
        claude: token("claude"),
        gemini: token("gemini"),
        cursor: token("cursor"),
    };
    let ok = |(s, b): (StatusCode, Value)| {
        assert_eq!(s, StatusCode::OK, "{b}");
        b
    };
    let (claude, gemini, cursor) = (&team.claude, &team.gemini, &team.cursor);
    ok(app
        .post_as(
            claude,
            "/mcp/context/set",
            &json!({"path": "summary", "value": "Stripe payments"}),
        )
        .await);
    ok(app
        .post_as(
            claude,
            "/mcp/collaborate/change",
            &json!({"filePath": "src/pay.rs", "before": "fn pay() {}\nold();\n", "after": "fn pay() {}\nnew();\n", "reason": "PaymentService"}),
        )
        .await);
    ok(app
        .post_as(
            gemini,
            "/mcp/collaborate/change",
            &json!({"filePath": "tests/pay_test.rs", "before": "", "after": "#[test]\nfn pays() {}\n"}),
        )
        .await);
    ok(app
        .post_as(
            claude,
            "/mcp/collaborate/change",
            &json!({"filePath": "src/pay.rs", "before": "new();\n", "after": "newer();\n"}),
        )
        .await);
    ok(app
        .post_as(
            claude,
            "/mcp/collaborate/task",
            &json!({"description": "Webhooks", "assignedTo": "gemini"}),
        )
        .await);
    let lock = ok(app
        .post_as(
            claude,
            "/mcp/collaborate/lock",
            &json!({"resource": "/src/pay.rs", "duration": "5m"}),
        )
        .await);
    ok(app
        .post_as(
            claude,
            "/mcp/collaborate/lock/release",
            &json!({"lockId": lock["id"]}),
        )
        .await);
    let work = ok(app
        .post_as(
            claude,
            "/mcp/collaborate/handshake",
            &json!({"step": "work_complete", "changes": ["src/pay.rs"], "message": "PaymentService done"}),
        )
        .await);
    ok(app
        .post_as(
            gemini,
            "/mcp/collaborate/handshake",
            &json!({"step": "review_start", "acknowledgeId": work["eventId"]}),
        )
        .await);
    ok(app
        .post_as(
            gemini,
            "/mcp/collaborate/handshake",
            &json!({"step": "review_complete", "feedback": {"approved": true, "suggestions": ["add a refund test"]}, "passControl": true}),
        )
        .await);
    ok(app
        .post_as(
            claude,
            "/mcp/collaborate/handshake",
            &json!({"step": "control_received", "nextAction": "webhooks"}),
        )
        .await);
    let asked = ok(app
        .post_as(
            cursor,
            "/mcp/collaborate/role",
            &json!({"action": "request", "role": "observer", "reason": "just watching"}),
        )
        .await);
    ok(app
        .post_as(
            claude,
            "/mcp/collaborate/role",
            &json!({"action": "respond", "requestId": asked["eventId"], "grant": true}),
        )
        .await);
    ok(app
        .post_as(
            gemini,
            "/mcp/messages/send",
            &json!({"body": format!("Careful with {SCRIPT} in templates\n# not a heading")}),
        )
        .await);
    ok(app
        .post_as(
            gemini,
            "/mcp/messages/send",
            &json!({"to": "claude", "body": SECRET}),
        )
        .await);
    ok(app
        .post_as(
            gemini,
            "/mcp/collaborate/status",
            &json!({"kind": "test", "status": "fail", "summary": "1 failed", "details": {"failures": ["tests/pay_test.rs:2"]}}),
        )
        .await);
    team
}

/// `POST /mcp/session/export` as the operator (`token` empty) or a participant.
async fn export(app: &TestApp, token: &str, body: Value) -> Value {
    let (status, b) = if token.is_empty() {
        app.post("/mcp/session/export", &body).await
    } else {
        app.post_as(token, "/mcp/session/export", &body).await
    };
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(b["format"], body["format"], "{b}");
    b
}

fn text(answer: &Value) -> String {
    answer["content"]
        .as_str()
        .unwrap_or_else(|| panic!("text content expected: {answer}"))
        .to_owned()
}

/// Runs the Python checks (`schema SCHEMA DOC` or `html FILE`) in the test venv; their report.
async fn python_check(args: Vec<String>, inputs: Vec<(&'static str, String)>) -> Value {
    const CHECKS: &str = r#"
import json, sys
from html.parser import HTMLParser
mode = sys.argv[1]
if mode == "schema":
    import jsonschema
    schema = json.load(open(sys.argv[2]))
    doc = json.load(open(sys.argv[3]))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in cls(schema, format_checker=cls.FORMAT_CHECKER).iter_errors(doc)]
    print(json.dumps({"errors": errors}))
else:
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
    class Check(HTMLParser):
        def __init__(self):
            super().__init__(convert_charrefs=True)
            self.stack, self.errors, self.tags, self.external, self.text, self.diff = [], [], set(), [], [], []
        def handle_starttag(self, tag, attrs):
            self.tags.add(tag)
            for k, v in attrs:
                if v and k in ("src", "href", "srcset", "action", "poster", "data", "background") \
                        and (v.lower().startswith(("http:", "https:", "//"))):
                    self.external.append(f"{tag} {k}={v}")
            if tag not in VOID:
                self.stack.append((tag, dict(attrs).get("class", "")))
        def handle_startendtag(self, tag, attrs):
            self.handle_starttag(tag, attrs)
            if tag not in VOID:
                self.stack.pop()
        def handle_endtag(self, tag):
            if not self.stack or self.stack[-1][0] != tag:
                self.errors.append(f"</{tag}> while open: {[t for t, _ in self.stack]}")
                return
            self.stack.pop()
        def handle_data(self, data):
            self.text.append(data)
            cls = self.stack[-1][1] if self.stack else ""
            if self.stack and self.stack[-1][0] == "span" and cls in ("add", "del", "hunk", "file", "ctx"):
                self.diff.append([cls, data])
    c = Check()
    c.feed(open(sys.argv[2], encoding="utf-8").read())
    c.close()
    if c.stack:
        c.errors.append(f"never closed: {c.stack}")
    print(json.dumps({"errors": c.errors, "tags": sorted(c.tags), "external": c.external, "text": "".join(c.text), "diff": c.diff}))
"#;
    let python = crate::mcp_sdk::python_clients()
        .as_ref()
        .expect("the test venv (with jsonschema, a dependency of the mcp SDK) installs")
        .clone();
    let dir = std::env::temp_dir().join(format!("collab-hub-export-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut argv = vec!["-c".to_owned(), CHECKS.to_owned()];
    argv.extend(args);
    for (name, content) in &inputs {
        std::fs::write(dir.join(name), content).unwrap();
    }
    let work = dir.clone();
    let out = actix_web::rt::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .args(argv)
            .current_dir(work)
            .output()
            .expect("python runs")
    })
    .await
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "python check failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the check prints JSON")
}

fn schema_path() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/docs/export.schema.json").to_owned()
}

/// The Markdown headings, in order (fenced and indented lines are not headings).
fn headings(md: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in md.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            out.push(line.to_owned());
        }
    }
    out
}

async fn every_form_reads_back_and_tells_the_session(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let team = busy_session(&app).await;

    // JSON: valid against the checked-in schema, and it says what happened.
    let answer = export(
        &app,
        "",
        json!({"sessionId": team.id, "format": "json", "includeCode": true}),
    )
    .await;
    let doc = &answer["content"];
    assert!(doc.is_object(), "{answer}");
    let report = python_check(
        vec!["schema".into(), schema_path(), "doc.json".into()],
        vec![("doc.json", doc.to_string())],
    )
    .await;
    assert_eq!(report["errors"], json!([]), "{report}");
    assert!(doc.get("viewer").is_none(), "the operator's view: {doc}");
    assert_eq!(doc["session"]["name"], "Payment <Gateway> & Co");
    assert_eq!(doc["session"]["project"], "/repo/pay");
    assert_eq!(doc["session"]["status"], "active");
    let summary = &doc["summary"];
    let people: Vec<(&str, &str)> = summary["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["aiId"].as_str().unwrap(), p["role"].as_str().unwrap()))
        .collect();
    assert_eq!(
        people,
        [
            ("claude", "driver"),
            ("cursor", "observer"),
            ("gemini", "navigator")
        ]
    );
    assert_eq!(summary["tasks"], json!({"done": 0, "total": 1}));
    assert_eq!(summary["filesTotal"], 2);
    assert_eq!(
        summary["files"][0],
        json!({"path": "src/pay.rs", "changes": 2, "by": [{"aiId": "claude", "changes": 2}]})
    );
    for category in [
        "message",
        "handshake",
        "role",
        "task",
        "lock",
        "status",
        "change",
    ] {
        assert!(
            summary["byCategory"][category].as_i64() > Some(0),
            "{category}: {summary}"
        );
    }
    assert_eq!(summary["byKind"]["change_recorded"], 3);
    let timeline = doc["timeline"].as_array().unwrap();
    assert_eq!(timeline.len() as i64, summary["events"].as_i64().unwrap());
    assert!(doc.get("truncated").is_none(), "{doc}");
    let ids: Vec<i64> = timeline.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first: {ids:?}");
    assert_eq!(ids[0], 1, "the whole log from session_created");
    let changes: Vec<&Value> = timeline
        .iter()
        .filter(|e| e["kind"] == "change_recorded")
        .collect();
    assert_eq!(changes.len(), 3);
    let diff = changes[0]["diff"].as_str().expect("includeCode: the diff");
    assert!(
        diff.contains("-old();") && diff.contains("+new();"),
        "{diff}"
    );
    let handshake: Vec<&str> = timeline
        .iter()
        .filter(|e| e["category"] == "handshake")
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert!(
        handshake.iter().any(|t| t.starts_with("work complete"))
            && handshake
                .iter()
                .any(|t| t.contains("complete: approved; control passed back")),
        "{handshake:?}"
    );
    let directed = timeline
        .iter()
        .find(|e| e["kind"] == "message_sent" && e["to"] == "claude")
        .expect("the operator sees the directed message");
    assert!(directed["text"].as_str().unwrap().contains(SECRET));

    // Without includeCode: no diffs.
    let answer = export(&app, "", json!({"sessionId": team.id, "format": "json"})).await;
    assert!(
        answer["content"]["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e.get("diff").is_none()),
        "{answer}"
    );

    // Markdown: the headings, in order; the body's "# not a heading" stays in its fence.
    let md = text(
        &export(
            &app,
            &team.claude,
            json!({"format": "markdown", "includeCode": true}),
        )
        .await,
    );
    assert_eq!(
        headings(&md),
        [
            "# Payment \\<Gateway\\> \\& Co",
            "## Summary",
            "### Participants",
            "### Events by category",
            "### Files changed",
            "## Timeline",
        ],
        "{md}"
    );
    assert!(md.contains("claude's view"), "{md}");
    assert!(md.contains("```diff") && md.contains("+new();"), "{md}");
    assert!(md.contains(SECRET), "claude is the recipient: {md}");
    // The default format is Markdown.
    let (status, default) = app
        .post_as(&team.claude, "/mcp/session/export", &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{default}");
    assert_eq!(default["format"], "markdown");
    assert!(
        default["content"]
            .as_str()
            .unwrap()
            .starts_with("# Payment")
    );

    // HTML: well-formed, nothing from outside, the script only as text, diff lines marked.
    let html = text(
        &export(
            &app,
            "",
            json!({"sessionId": team.id, "format": "html", "includeCode": true}),
        )
        .await,
    );
    assert!(!html.to_lowercase().contains("<script"), "{html}");
    let report = python_check(
        vec!["html".into(), "page.html".into()],
        vec![("page.html", html.clone())],
    )
    .await;
    assert_eq!(report["errors"], json!([]), "{report}");
    assert_eq!(report["external"], json!([]), "{report}");
    let tags: Vec<&str> = report["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(!tags.contains(&"script") && !tags.contains(&"link") && !tags.contains(&"img"));
    assert!(tags.contains(&"style") && tags.contains(&"h1"), "{tags:?}");
    let page_text = report["text"].as_str().unwrap();
    assert!(
        page_text.contains(&format!("Careful with {SCRIPT} in templates")),
        "the injected script is shown as text"
    );
    assert!(page_text.contains("Payment <Gateway> & Co"));
    for outside in ["url(", "@import", "http://", "https://"] {
        assert!(!page_text.contains(outside), "{outside} in the page");
    }
    let diff = report["diff"].as_array().unwrap();
    let marked = |class: &str, text: &str| {
        diff.iter()
            .any(|l| l[0] == class && l[1].as_str().is_some_and(|t| t.starts_with(text)))
    };
    assert!(
        marked("del", "-old();") && marked("add", "+new();") && marked("hunk", "@@"),
        "{diff:?}"
    );
    assert!(html.contains(".add{") && html.contains(".del{"));
}

async fn a_participant_gets_its_own_view_and_the_operator_everything(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let team = busy_session(&app).await;
    let everything = export(&app, "", json!({"sessionId": team.id, "format": "json"})).await;
    let mine = export(&app, &team.cursor, json!({"format": "json"})).await;
    let (all, cursor) = (&everything["content"], &mine["content"]);
    assert_eq!(cursor["viewer"], "cursor");
    let directed_to_others = |doc: &Value| -> Vec<i64> {
        doc["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["to"].as_str().is_some_and(|to| to != "cursor") && e["actor"] != "cursor")
            .map(|e| e["id"].as_i64().unwrap())
            .collect()
    };
    let hidden = directed_to_others(all);
    assert!(!hidden.is_empty(), "the operator sees directed events");
    assert_eq!(directed_to_others(cursor), Vec::<i64>::new());
    // Its counts are its own view's too.
    assert_eq!(
        cursor["summary"]["events"].as_i64().unwrap() + hidden.len() as i64,
        all["summary"]["events"].as_i64().unwrap()
    );
    assert_eq!(
        all["summary"]["byKind"]["message_sent"].as_i64().unwrap() - 1,
        cursor["summary"]["byKind"]["message_sent"]
            .as_i64()
            .unwrap()
    );
    for format in ["markdown", "html"] {
        let page = text(&export(&app, &team.cursor, json!({"format": format})).await);
        assert!(
            !page.contains(SECRET),
            "{format}: cursor reads gemini's note to claude"
        );
        assert!(
            page.contains("Careful with"),
            "{format}: broadcasts are there"
        );
        let operators =
            text(&export(&app, "", json!({"sessionId": team.id, "format": format})).await);
        assert!(operators.contains(SECRET), "{format}: the operator sees it");
    }
    // A participant exports its own session only.
    let (other, _, _) = app.create_pair("other").await;
    let (status, body) = app
        .post_as(
            &team.cursor,
            "/mcp/session/export",
            &json!({"sessionId": other, "format": "json"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

async fn paused_and_completed_sessions_export_and_bad_input_is_a_400(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let team = busy_session(&app).await;
    for (action, status) in [("pause", "paused"), ("complete", "completed")] {
        let (s, b) = app
            .post_as(
                &team.claude,
                &format!("/mcp/session/{}/status", team.id),
                &json!({ "action": action }),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let doc = export(&app, &team.gemini, json!({"format": "json"})).await;
        assert_eq!(doc["content"]["session"]["status"], status, "{doc}");
        let md = text(&export(&app, &team.gemini, json!({"format": "markdown"})).await);
        assert!(md.contains(&format!("| Status | {status} |")), "{md}");
    }
    // Bad input: a 400 naming the field (also for a field another action takes).
    let (s, b) = app
        .post(
            "/mcp/session/export",
            &json!({"sessionId": team.id, "format": "pdf"}),
        )
        .await;
    let err = assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field");
    assert_eq!(err["field"], "format", "{b}");
    let (s, b) = app
        .post(
            "/mcp/session/export",
            &json!({"sessionId": team.id, "includeCode": "yes"}),
        )
        .await;
    let err = assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field");
    assert_eq!(err["field"], "includeCode", "{b}");
    let (s, b) = app
        .post(
            "/mcp/session/export",
            &json!({"sessionId": team.id, "format": "json", "strategy": "quick"}),
        )
        .await;
    let err = assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field");
    assert_eq!(err["field"], "strategy", "{b}");
    let (s, b) = app
        .post(
            "/mcp/session/export",
            &json!({"sessionId": team.id, "action": "save"}),
        )
        .await;
    let err = assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field");
    assert_eq!(err["field"], "action", "{b}");
    let (s, b) = app
        .post("/mcp/session/export", &json!({"format": "json"}))
        .await;
    let err = assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field");
    assert_eq!(err["field"], "sessionId", "{b}");
    let (s, b) = app
        .post(
            "/mcp/session/export",
            &json!({"sessionId": uuid::Uuid::new_v4(), "format": "json"}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
}

/// Retention compacts a completed session's log: the export still answers, from what is left
/// (the change ledger, the tasks), and says which events are gone.
async fn a_compacted_session_exports_what_is_left_and_says_so(backend: Backend) {
    let Some(db) = TestDb::fresh(backend) else {
        return;
    };
    let mut settings = collab_hub::Settings::for_database("unused");
    settings.retention_max_bytes = 1;
    settings.retention_interval_secs = 1;
    let app = start_on(db, settings).await;
    let (id, claude, _) = app.create_pair("compacted").await;
    for (path, body) in [
        (
            "/mcp/collaborate/change",
            json!({"filePath": "src/a.rs", "before": "a\n", "after": "b\n"}),
        ),
        ("/mcp/messages/send", json!({"body": "done for today"})),
        (
            &format!("/mcp/session/{id}/status") as &str,
            json!({"action": "complete"}),
        ),
    ] {
        let (s, b) = app.post_as(&claude, path, &body).await;
        assert_eq!(s, StatusCode::OK, "{path}: {b}");
    }
    let mut doc = Value::Null;
    for _ in 0..60 {
        doc = export(&app, "", json!({"sessionId": id, "format": "json"})).await["content"].take();
        if doc["truncated"]["compactedThrough"].as_i64() > Some(0) {
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let gone = doc["truncated"]["compactedThrough"].as_i64().unwrap_or(0);
    assert!(gone >= 4, "compacted through the completion: {doc}");
    assert!(
        doc["truncated"]["note"]
            .as_str()
            .unwrap()
            .contains("compacted by the retention policy"),
        "{doc}"
    );
    assert_eq!(doc["summary"]["filesTotal"], 1, "{doc}");
    assert_eq!(doc["session"]["status"], "completed");
    let md = text(&export(&app, "", json!({"sessionId": id, "format": "markdown"})).await);
    assert!(
        md.contains(&format!("Events #1 to #{gone} were compacted")),
        "{md}"
    );
    assert!(!md.contains("Nothing happened yet"), "{md}");
}
