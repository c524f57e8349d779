//! The binary's own behaviour: start-up errors, `migrate`, `--help`.

use std::process::Command;

use crate::helpers::{Backend, TestDb, both_backends};

fn hub(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_collab-hub"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run collab-hub")
}

#[test]
fn unreachable_database_is_one_redacted_line_and_a_failure() {
    let out = hub(&[
        "--bind",
        "127.0.0.1:0",
        "--database-url",
        "postgres://bob:s3cret@127.0.0.1:1/hub",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("postgres://bob:***@127.0.0.1:1/hub"),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
}

#[test]
fn unusable_sqlite_path_is_refused() {
    let out = hub(&[
        "--bind",
        "127.0.0.1:0",
        "--database-url",
        "sqlite:///proc/collab-hub/none/hub.db",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("/proc/collab-hub/none"), "{err}");
}

#[test]
fn help_documents_every_flag_and_its_variable() {
    let out = hub(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for (flag, env) in [
        ("--bind", "COLLAB_HUB_BIND"),
        ("--database-url", "DATABASE_URL"),
        ("--data-dir", "COLLAB_HUB_DATA_DIR"),
        ("--operator-token", "COLLAB_HUB_OPERATOR_TOKEN"),
        ("--max-body-bytes", "COLLAB_HUB_MAX_BODY_BYTES"),
        ("--workers", "COLLAB_HUB_WORKERS"),
    ] {
        assert!(
            help.contains(flag) && help.contains(env),
            "{flag}/{env} missing:\n{help}"
        );
    }
    assert!(help.contains("migrate") && help.contains("serve"));
}

both_backends!(
    migrate_applies_then_reports_up_to_date,
    token_command_asks_the_running_hub,
    export_command_writes_a_file_from_the_running_hub
);

/// `collab-hub export SESSION --format markdown --include-code --out FILE` asks the running
/// hub and writes the Markdown as it is; a refusal is one line and a failure.
async fn export_command_writes_a_file_from_the_running_hub(backend: Backend) {
    let Some(app) = crate::helpers::spawn_app(backend).await else {
        return;
    };
    let (id, claude, _) = app.create_pair("cli export").await;
    let (status, body) = app
        .post_as(
            &claude,
            "/mcp/collaborate/change",
            &serde_json::json!({"filePath": "src/a.rs", "before": "a\n", "after": "b\n"}),
        )
        .await;
    assert_eq!(status.as_u16(), 200, "{body}");
    let dir = std::env::temp_dir().join(format!("collab-hub-cli-export-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let out_file = dir.join("session.md");
    let (address, out_path, session) = (
        app.address.clone(),
        out_file.display().to_string(),
        id.clone(),
    );
    let (out, refused) = actix_web::rt::task::spawn_blocking(move || {
        let out = hub(&[
            "export",
            &session,
            "--format",
            "markdown",
            "--include-code",
            "--out",
            &out_path,
            "--hub-url",
            &address,
        ]);
        let refused = hub(&["export", "not-a-session", "--hub-url", &address]);
        (out, refused)
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = std::fs::read_to_string(&out_file).expect("the export was written");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(md.starts_with("# cli export\n"), "{md}");
    for part in ["## Summary", "## Timeline", "edit src/a.rs", "+b"] {
        assert!(md.contains(part), "{part} missing:\n{md}");
    }
    assert!(out.stdout.is_empty(), "--out: nothing on stdout");
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("400") && err.contains("sessionId"), "{err}");
}

async fn token_command_asks_the_running_hub(backend: Backend) {
    let Some(app) = crate::helpers::spawn_app(backend).await else {
        return;
    };
    let (id, _, _) = app.create_pair("cli token").await;
    let address = app.address.clone();
    let out = actix_web::rt::task::spawn_blocking(move || {
        hub(&[
            "token",
            "--session",
            &id,
            "--participant",
            "gemini",
            "--hub-url",
            &address,
        ])
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(token.starts_with("chp_"), "{token}");
    let (s, me) = app
        .get_as(
            &token,
            &format!("/mcp/session/{}", app.create_pair("other").await.0),
        )
        .await;
    assert_eq!(
        s.as_u16(),
        401,
        "a token is good for its own session only: {me}"
    );
}

async fn migrate_applies_then_reports_up_to_date(backend: Backend) {
    let Some(db) = TestDb::fresh(backend) else {
        return;
    };
    let first = hub(&["migrate", "--database-url", &db.url]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("applied 20261124000001"));
    let again = hub(&["migrate", "--database-url", &db.url]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("up to date"));
}
