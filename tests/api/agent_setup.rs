//! `collab-hub hook` and `collab-hub connect` against a live hub: the hook answers in each
//! client's documented hook output shape, stays silent when nothing waits or the hub is down,
//! and `connect` writes configuration files that parse and carry a working token.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, both_backends, spawn_app};

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs `collab-hub ARGS` with `envs`, `stdin` fed and closed; no inherited hub variables.
fn hub(args: &[&str], envs: &[(&str, &str)], stdin: &str) -> Run {
    let started = Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_collab-hub"));
    cmd.args(args)
        .env("RUST_LOG", "warn")
        .env_remove("COLLAB_HUB_URL")
        .env_remove("COLLAB_HUB_TOKEN")
        .env_remove("COLLAB_HUB_OPERATOR_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run collab-hub");
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes());
    let out = child.wait_with_output().expect("collab-hub ends");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: started.elapsed(),
    }
}

/// The hook of `client` for the participant holding `token`, fed `input` on stdin.
fn hook(app_url: &str, token: &str, client: &str, input: &Value) -> Run {
    hub(
        &["hook", "--client", client],
        &[("COLLAB_HUB_URL", app_url), ("COLLAB_HUB_TOKEN", token)],
        &input.to_string(),
    )
}

/// Claude Code's documented hook input (common fields plus the event's own).
fn claude_input(event: &str, extra: Value) -> Value {
    let mut v = json!({
        "session_id": "abc123",
        "transcript_path": "/tmp/transcript.jsonl",
        "cwd": "/tmp",
        "permission_mode": "default",
        "hook_event_name": event,
    });
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    v
}

/// Gemini CLI's documented hook input (base fields plus the event's own).
fn gemini_input(event: &str, extra: Value) -> Value {
    let mut v = json!({
        "session_id": "s1",
        "transcript_path": "/tmp/t.json",
        "cwd": "/tmp",
        "hook_event_name": event,
        "timestamp": "2026-12-03T10:00:00Z",
    });
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    v
}

/// Codex's hook input (0.171; the input schemas ship in the `codex` binary): the common fields,
/// `turn_id` for the events inside a turn, plus the event's own.
fn codex_input(event: &str, extra: Value) -> Value {
    let mut v = json!({
        "session_id": "01a23c1e-bf46-7f52-9448-025df8c6f767",
        "transcript_path": null,
        "cwd": "/tmp",
        "hook_event_name": event,
        "model": "gpt-5",
        "permission_mode": "default",
    });
    if event != "SessionStart" {
        v["turn_id"] = json!("01a23c1e-bf69-7430-a99b-1e8d29da43ee");
    }
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    v
}

/// What Codex 0.171 accepts on a hook's stdout for `event` (its output schemas, shipped in the
/// binary, allow no other keys: `additionalProperties: false`); returns the text for the model
/// (`additionalContext`, or a Stop's `reason`).
fn codex_output(out: &Value, event: &str) -> String {
    let common = ["continue", "stopReason", "suppressOutput", "systemMessage"];
    let own: &[&str] = match event {
        "SessionStart" => &["hookSpecificOutput"],
        "UserPromptSubmit" | "PostToolUse" => &["decision", "reason", "hookSpecificOutput"],
        "Stop" => &["decision", "reason"],
        _ => &[],
    };
    for key in out.as_object().expect("an object").keys() {
        assert!(
            common.contains(&key.as_str()) || own.contains(&key.as_str()),
            "{event}: Codex does not accept `{key}`: {out}"
        );
    }
    if event == "Stop" {
        assert_eq!(out["decision"], "block", "{out}");
        return out["reason"]
            .as_str()
            .expect("a block needs its reason")
            .to_owned();
    }
    let spec = out["hookSpecificOutput"]
        .as_object()
        .expect("hookSpecificOutput");
    for key in spec.keys() {
        assert!(
            ["hookEventName", "additionalContext"].contains(&key.as_str()),
            "{event}: hookSpecificOutput.{key}: {out}"
        );
    }
    assert_eq!(spec["hookEventName"], event, "{out}");
    spec["additionalContext"]
        .as_str()
        .expect("additionalContext")
        .to_owned()
}

/// One JSON document on stdout, exit 0.
fn json_out(run: &Run, what: &str) -> Value {
    assert!(run.ok, "{what}: {}", run.stderr);
    assert_eq!(
        run.stdout.trim().lines().count(),
        1,
        "{what}: {}",
        run.stdout
    );
    serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("{what}: stdout is not JSON ({e}): {}", run.stdout))
}

fn silent(run: &Run, what: &str) {
    assert!(run.ok, "{what}: {}", run.stderr);
    assert_eq!(run.stdout, "", "{what}");
}

/// `hookSpecificOutput` of the documented context-adding shape; returns `additionalContext`.
fn context_of(out: &Value, event: &str) -> String {
    let spec = &out["hookSpecificOutput"];
    assert_eq!(spec["hookEventName"], event, "{out}");
    assert_eq!(out.as_object().unwrap().len(), 1, "{out}");
    spec["additionalContext"]
        .as_str()
        .expect("additionalContext")
        .to_owned()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    actix_web::rt::task::spawn_blocking(f).await.unwrap()
}

both_backends!(
    hook_answers_in_each_clients_documented_shape,
    connect_writes_each_clients_configuration
);

async fn hook_answers_in_each_clients_documented_shape(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_id, claude, gemini) = app.create_pair("hooks").await;
    let url = app.address.clone();

    // Nothing waits yet: the per-turn hooks print nothing; session start still briefs.
    let (u, t) = (url.clone(), claude.clone());
    let (prompt, start, gem_start, codex_start, codex_prompt) = blocking(move || {
        (
            hook(
                &u,
                &t,
                "claude",
                &claude_input("UserPromptSubmit", json!({"prompt": "hi"})),
            ),
            hook(
                &u,
                &t,
                "claude",
                &claude_input("SessionStart", json!({"source": "startup", "model": "m"})),
            ),
            hook(
                &u,
                &t,
                "gemini",
                &gemini_input("SessionStart", json!({"source": "startup"})),
            ),
            hook(
                &u,
                &t,
                "codex",
                &codex_input("SessionStart", json!({"source": "startup"})),
            ),
            hook(
                &u,
                &t,
                "codex",
                &codex_input("UserPromptSubmit", json!({"prompt": "hi"})),
            ),
        )
    })
    .await;
    silent(&prompt, "UserPromptSubmit with nothing waiting");
    silent(&codex_prompt, "codex UserPromptSubmit with nothing waiting");
    let text = codex_output(
        &json_out(&codex_start, "codex SessionStart"),
        "SessionStart",
    );
    assert!(
        text.contains("you are claude (driver)") && text.contains("Briefing:"),
        "codex SessionStart: {text}"
    );
    for (run, what) in [
        (&start, "claude SessionStart"),
        (&gem_start, "gemini SessionStart"),
    ] {
        let text = context_of(&json_out(run, what), "SessionStart");
        assert!(text.contains("you are claude (driver)"), "{what}: {text}");
        assert!(text.contains("Briefing:"), "{what}: {text}");
    }

    // A critical finding from gemini now waits for claude.
    let (status, body) = app
        .post_as(
            &gemini,
            "/mcp/context/discovery",
            &json!({"finding": "the migration drops the users table", "severity": "critical"}),
        )
        .await;
    assert!(status.is_success(), "{body}");
    let (u, t) = (url.clone(), claude.clone());
    let gem_session = format!("gemini-{}", uuid::Uuid::new_v4());
    let runs = blocking(move || {
        let c = |event: &str, extra: Value| hook(&u, &t, "claude", &claude_input(event, extra));
        let g = |event: &str, extra: Value| hook(&u, &t, "gemini", &gemini_input(event, extra));
        vec![
            c("UserPromptSubmit", json!({"prompt": "go on"})),
            c("PostToolUse", json!({"tool_name": "Bash", "tool_input": {"command": "ls"}, "tool_response": {}})),
            c("SessionStart", json!({"source": "compact"})),
            c("Stop", json!({"stop_hook_active": false})),
            c("Stop", json!({"stop_hook_active": true})),
            c("PreCompact", json!({"trigger": "auto", "custom_instructions": ""})),
            g("BeforeAgent", json!({"prompt": "go on"})),
            g("AfterTool", json!({"tool_name": "read_file", "tool_input": {}, "tool_response": {"llmContent": "x"}})),
            g("AfterAgent", json!({"prompt": "p", "prompt_response": "r", "stop_hook_active": false})),
            g("PreCompress", json!({"trigger": "auto", "session_id": gem_session})),
            // After a compaction, the next turn of that Gemini session is briefed again, once.
            g("BeforeAgent", json!({"prompt": "x", "session_id": gem_session})),
            g("BeforeAgent", json!({"prompt": "x", "session_id": gem_session})),
            hub(
                &["hook", "--client", "codex", r#"{"type":"agent-turn-complete","thread-id":"t","turn-id":"1","cwd":"/tmp","input-messages":["hi"],"last-assistant-message":"done"}"#],
                &[("COLLAB_HUB_URL", &u), ("COLLAB_HUB_TOKEN", &t)],
                "",
            ),
        ]
    })
    .await;
    let finding = "the migration drops the users table";
    for (i, event) in [
        (0, "UserPromptSubmit"),
        (1, "PostToolUse"),
        (2, "SessionStart"),
    ] {
        let text = context_of(&json_out(&runs[i], event), event);
        assert!(text.contains(finding), "{event}: {text}");
    }
    let stop = json_out(&runs[3], "Stop");
    assert_eq!(stop["decision"], "block", "{stop}");
    assert!(stop["reason"].as_str().unwrap().contains(finding), "{stop}");
    silent(&runs[4], "Stop again (stop_hook_active)");
    silent(&runs[5], "PreCompact");
    for (i, event) in [(6, "BeforeAgent"), (7, "AfterTool")] {
        let text = context_of(&json_out(&runs[i], event), event);
        assert!(text.contains(finding), "{event}: {text}");
    }
    let after = json_out(&runs[8], "AfterAgent");
    assert_eq!(after["decision"], "deny", "{after}");
    assert!(
        after["reason"].as_str().unwrap().contains(finding),
        "{after}"
    );
    silent(&runs[9], "PreCompress");
    let briefed = context_of(
        &json_out(&runs[10], "BeforeAgent after PreCompress"),
        "BeforeAgent",
    );
    assert!(
        briefed.contains("you are claude") && briefed.contains(finding),
        "{briefed}"
    );
    let again = context_of(&json_out(&runs[11], "BeforeAgent later"), "BeforeAgent");
    assert!(
        !again.contains("you are claude") && again.contains(finding),
        "{again}"
    );
    silent(&runs[12], "codex notify");
    // Gemini itself has nothing waiting: silent.
    let (u, t) = (url.clone(), gemini.clone());
    let quiet = blocking(move || {
        hook(
            &u,
            &t,
            "gemini",
            &gemini_input("AfterTool", json!({"tool_name": "x"})),
        )
    })
    .await;
    silent(&quiet, "gemini with nothing waiting");

    // Codex, as `connect codex` registers it (`--event` named on the command line), fed Codex's
    // documented input for each event.
    let (u, t) = (url.clone(), claude.clone());
    let (compacted, restarted) = (
        format!("codex-{}", uuid::Uuid::new_v4()),
        format!("codex-{}", uuid::Uuid::new_v4()),
    );
    let runs = blocking(move || {
        let x = |event: &str, extra: Value| {
            hub(
                &["hook", "--client", "codex", "--event", event],
                &[("COLLAB_HUB_URL", &u), ("COLLAB_HUB_TOKEN", &t)],
                &codex_input(event, extra).to_string(),
            )
        };
        let tool = json!({"tool_name": "Bash", "tool_input": {"command": "ls"},
                          "tool_response": "Cargo.toml", "tool_use_id": "call_1"});
        let in_session = |id: &str, extra: Value| {
            let mut e = tool.clone();
            e.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            e["session_id"] = json!(id);
            e
        };
        vec![
            x("UserPromptSubmit", json!({"prompt": "go on"})),
            x("PostToolUse", tool.clone()),
            x(
                "Stop",
                json!({"stop_hook_active": false, "last_assistant_message": "done"}),
            ),
            x(
                "Stop",
                json!({"stop_hook_active": true, "last_assistant_message": "done"}),
            ),
            x(
                "PreCompact",
                json!({"trigger": "auto", "session_id": compacted}),
            ),
            // After a compaction, the next context of that Codex session is briefed, once.
            x("PostToolUse", in_session(&compacted, json!({}))),
            x("PostToolUse", in_session(&compacted, json!({}))),
            // The SessionStart that follows a compaction briefs and settles the mark.
            x(
                "PreCompact",
                json!({"trigger": "manual", "session_id": restarted}),
            ),
            x(
                "SessionStart",
                json!({"source": "compact", "session_id": restarted}),
            ),
            x(
                "UserPromptSubmit",
                json!({"prompt": "x", "session_id": restarted}),
            ),
            // Without --event the input names it.
            hook(&u, &t, "codex", &codex_input("PostToolUse", tool.clone())),
        ]
    })
    .await;
    for (i, event) in [
        (0, "UserPromptSubmit"),
        (1, "PostToolUse"),
        (10, "PostToolUse"),
    ] {
        let text = codex_output(&json_out(&runs[i], event), event);
        assert!(
            text.contains(finding) && !text.contains("you are claude"),
            "codex {event}: {text}"
        );
    }
    let reason = codex_output(&json_out(&runs[2], "codex Stop"), "Stop");
    assert!(reason.contains(finding), "{reason}");
    silent(&runs[3], "codex Stop again (stop_hook_active)");
    silent(&runs[4], "codex PreCompact");
    let briefed = codex_output(&json_out(&runs[5], "after PreCompact"), "PostToolUse");
    assert!(
        briefed.contains("you are claude (driver)") && briefed.contains(finding),
        "{briefed}"
    );
    let again = codex_output(&json_out(&runs[6], "later"), "PostToolUse");
    assert!(
        !again.contains("you are claude") && again.contains(finding),
        "{again}"
    );
    silent(&runs[7], "codex PreCompact");
    let start = codex_output(&json_out(&runs[8], "SessionStart compact"), "SessionStart");
    assert!(
        start.contains("you are claude (driver)") && start.contains(finding),
        "{start}"
    );
    let next = codex_output(
        &json_out(&runs[9], "after SessionStart"),
        "UserPromptSubmit",
    );
    assert!(
        !next.contains("you are claude") && next.contains(finding),
        "briefed once: {next}"
    );
}

/// A closed port, and a port that accepts but never answers: nothing on stdout, exit 0, within
/// a second.
#[test]
fn hook_with_the_hub_down_or_stuck_is_silent_and_quick() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let stuck = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stuck_url = format!("http://{}", stuck.local_addr().unwrap());
    let holder = std::thread::spawn(move || {
        let held: Vec<_> = stuck.incoming().take(7).collect();
        std::thread::sleep(Duration::from_secs(3));
        drop(held);
    });
    for url in [&closed, &stuck_url] {
        for (client, input) in [
            (
                "claude",
                claude_input("SessionStart", json!({"source": "startup"})),
            ),
            (
                "claude",
                claude_input("Stop", json!({"stop_hook_active": false})),
            ),
            (
                "gemini",
                gemini_input("BeforeAgent", json!({"prompt": "x"})),
            ),
            (
                "codex",
                codex_input("SessionStart", json!({"source": "startup"})),
            ),
            (
                "codex",
                codex_input(
                    "Stop",
                    json!({"stop_hook_active": false, "last_assistant_message": "x"}),
                ),
            ),
        ] {
            let run = hook(url, "chp_x", client, &input);
            silent(&run, &format!("{client} against {url}"));
            assert!(
                run.took < Duration::from_secs(1),
                "{client} {url}: {:?}",
                run.took
            );
        }
    }
    // Without a token there is nobody to ask: silent too.
    let run = hub(&["hook", "--client", "claude"], &[], "{}");
    silent(&run, "no token");
    drop(holder);
}

pub(crate) fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("collab-hub-{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.canonicalize().unwrap()
}

pub(crate) fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

/// `KEY=value` (or `export KEY=value`) from an env file.
fn env_value(path: &Path, key: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .find_map(|l| {
            l.trim_start_matches("export ")
                .strip_prefix(&format!("{key}="))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("{key} not in {}", path.display()))
}

/// The token works: the session answers it, and a token the hub never issued is refused.
async fn token_works(app: &TestApp, id: &str, token: &str) {
    let (status, body) = app.get_as(token, &format!("/mcp/session/{id}")).await;
    assert_eq!(status.as_u16(), 200, "{body}");
    assert_eq!(body["sessionId"], id);
}

/// A hook command as `connect` wrote it, run the way the clients run it (`sh -c`, the token in
/// the environment, the input on stdin); its stdout as JSON.
async fn run_written(command: String, token: String, input: Value) -> Value {
    let out = blocking(move || {
        let out = Command::new("sh")
            .args(["-c", &command])
            .env_remove("COLLAB_HUB_URL")
            .env("COLLAB_HUB_TOKEN", &token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin
                    .take()
                    .unwrap()
                    .write_all(input.to_string().as_bytes())?;
                c.wait_with_output()
            })
            .expect("run the hook command");
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .await;
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

async fn connect_writes_each_clients_configuration(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, _, _) = app.create_pair("connect").await;
    let (status, _) = app
        .get_as("chp_never_issued", &format!("/mcp/session/{id}"))
        .await;
    assert_eq!(
        status.as_u16(),
        401,
        "a bad token must be refused for the check to mean anything"
    );
    let repo = temp_dir("connect-repo");
    let home = temp_dir("connect-home");
    std::fs::write(repo.join(".gitignore"), "target/").unwrap();
    std::fs::write(
        home.join(".claude.json"),
        r#"{"numStartups": 3, "projects": {"/elsewhere": {"mcpServers": {"x": {"type": "http", "url": "http://x"}}}}}"#,
    )
    .unwrap();
    std::fs::create_dir_all(repo.join(".gemini")).unwrap();
    std::fs::write(repo.join(".gemini/settings.json"), r#"{"theme": "GitHub"}"#).unwrap();
    std::fs::create_dir_all(repo.join(".codex")).unwrap();
    // What an earlier `connect codex` wrote (a `notify` Codex ignores in a project's config),
    // and a hook of the user's own.
    std::fs::write(
        repo.join(".codex/config.toml"),
        "# >>> collab-hub (written by `collab-hub connect`; replaced on rerun)\n\
         notify = [\"collab-hub\", \"hook\", \"--client\", \"codex\"]\n# <<< collab-hub\n\
         model = \"o3\"\n\n[tui]\nnotifications = true\n",
    )
    .unwrap();
    std::fs::write(
        repo.join(".codex/hooks.json"),
        r#"{"hooks": {"Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}]}}"#,
    )
    .unwrap();

    let (url, r, h, sid) = (
        app.address.clone(),
        repo.display().to_string(),
        home.display().to_string(),
        id.clone(),
    );
    let runs = blocking(move || {
        let connect = |client: &str, name: &str, extra: &[&str]| {
            let mut args = vec![
                "connect",
                client,
                "--session",
                &sid,
                "--as",
                name,
                "--url",
                &url,
                "--dir",
                &r,
            ];
            args.extend_from_slice(extra);
            hub(&args, &[("HOME", &h)], "")
        };
        vec![
            connect("claude", "claude", &["--print"]),
            connect("claude", "claude", &[]),
            connect("gemini", "gemini", &[]),
            connect("cursor", "cursor", &[]),
            connect("codex", "codex", &["--role", "navigator"]),
            // A rerun replaces collab-hub's entries instead of adding more.
            connect("gemini", "gemini", &[]),
            connect("codex", "codex", &[]),
            connect("claude", "nobody", &["--role", "driver"]),
        ]
    })
    .await;
    for run in &runs[..7] {
        assert!(run.ok, "{}", run.stderr);
    }
    // --print shows, writes nothing.
    assert!(
        runs[0].stdout.contains(".claude/settings.local.json"),
        "{}",
        runs[0].stdout
    );
    assert!(
        runs[0].stdout.contains("COLLAB_HUB_TOKEN"),
        "{}",
        runs[0].stdout
    );
    assert!(
        runs[0].stdout.contains("nothing written"),
        "{}",
        runs[0].stdout
    );
    // The command says where it wrote what.
    assert!(
        runs[1].stdout.contains("wrote ") && runs[1].stdout.contains(".claude.json"),
        "{}",
        runs[1].stdout
    );
    // Refused join (the driver seat is taken): a failure naming why.
    assert!(
        !runs[7].ok && runs[7].stderr.contains("409"),
        "{}",
        runs[7].stderr
    );

    // Claude Code: local-scope server in ~/.claude.json, hooks + env in settings.local.json.
    assert!(
        !runs[0].stdout.contains("numStartups"),
        "--print shows only collab-hub's entry: {}",
        runs[0].stdout
    );
    let claude_json = read_json(&home.join(".claude.json"));
    assert_eq!(
        claude_json["numStartups"], 3,
        "merged, not replaced: {claude_json}"
    );
    assert_eq!(
        claude_json["projects"]["/elsewhere"]["mcpServers"]["x"]["url"],
        "http://x"
    );
    let server = &claude_json["projects"][repo.display().to_string()]["mcpServers"]["collab-hub"];
    assert_eq!(server["type"], "http", "{claude_json}");
    assert_eq!(server["url"], format!("{}/mcp", app.address));
    let header = server["headers"]["Authorization"].as_str().unwrap();
    let claude_token = header.strip_prefix("Bearer ").unwrap().to_owned();
    token_works(&app, &id, &claude_token).await;
    let settings = read_json(&repo.join(".claude/settings.local.json"));
    assert_eq!(settings["env"]["COLLAB_HUB_TOKEN"], claude_token.as_str());
    assert_eq!(settings["env"]["COLLAB_HUB_URL"], app.address.as_str());
    for event in [
        "SessionStart",
        "UserPromptSubmit",
        "PostToolUse",
        "PreCompact",
        "Stop",
    ] {
        let groups = settings["hooks"][event]
            .as_array()
            .unwrap_or_else(|| panic!("{event}: {settings}"));
        assert_eq!(groups.len(), 1, "{event}");
        assert_eq!(groups[0]["hooks"][0]["type"], "command");
    }
    // The written hook command, run as Claude Code would (sh -c, env from the settings).
    let command = settings["hooks"]["SessionStart"][0]["hooks"][0]["command"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(command.contains("hook --client claude"), "{command}");
    let start = run_written(
        command,
        claude_token.clone(),
        claude_input("SessionStart", json!({"source": "startup"})),
    )
    .await;
    assert!(
        context_of(&start, "SessionStart").contains("you are claude"),
        "{start}"
    );

    // Gemini CLI: settings merged (theme kept), token only in .gemini/.env.
    let gem = read_json(&repo.join(".gemini/settings.json"));
    assert_eq!(gem["theme"], "GitHub", "{gem}");
    assert_eq!(gem["tools"]["enableHooks"], true, "{gem}");
    let server = &gem["mcpServers"]["collab-hub"];
    assert_eq!(server["httpUrl"], format!("{}/mcp-gemini", app.address));
    assert_eq!(
        server["headers"]["Authorization"], "Bearer $GEMINI_CLI_COLLAB_HUB_TOKEN",
        "Gemini CLI redacts variables named *TOKEN* from header expansion, except GEMINI_CLI_*"
    );
    for event in [
        "SessionStart",
        "BeforeAgent",
        "AfterTool",
        "PreCompress",
        "AfterAgent",
    ] {
        assert_eq!(
            gem["hooks"][event].as_array().map(Vec::len),
            Some(1),
            "{event}: {gem}"
        );
    }
    let gem_text = std::fs::read_to_string(repo.join(".gemini/settings.json")).unwrap();
    assert!(
        !gem_text.contains("chp_"),
        "no token in settings.json: {gem_text}"
    );
    let gem_token = env_value(&repo.join(".gemini/.env"), "COLLAB_HUB_TOKEN");
    assert_eq!(
        env_value(&repo.join(".gemini/.env"), "GEMINI_CLI_COLLAB_HUB_TOKEN"),
        gem_token,
        "the header's variable and the hooks' carry the same token"
    );
    assert_eq!(
        env_value(&repo.join(".gemini/.env"), "COLLAB_HUB_URL"),
        app.address
    );
    token_works(&app, &id, &gem_token).await;

    // Cursor: .cursor/mcp.json with the header (a newcomer: joined).
    let cursor = read_json(&repo.join(".cursor/mcp.json"));
    let server = &cursor["mcpServers"]["collab-hub"];
    assert_eq!(server["url"], format!("{}/mcp-streaming", app.address));
    let cursor_token = server["headers"]["Authorization"]
        .as_str()
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_owned();
    token_works(&app, &id, &cursor_token).await;

    // Codex: config.toml keeps its keys, has one server table and no `notify` (the old block
    // is gone); token in the env file.
    let toml = std::fs::read_to_string(repo.join(".codex/config.toml")).unwrap();
    assert!(
        toml.contains("model = \"o3\"") && toml.contains("[tui]"),
        "{toml}"
    );
    assert_eq!(
        toml.matches("[mcp_servers.collab-hub]").count(),
        1,
        "{toml}"
    );
    assert!(!toml.contains("notify ="), "{toml}");
    assert!(
        toml.contains(&format!("url = \"{}/mcp\"", app.address)),
        "{toml}"
    );
    assert!(
        toml.contains("bearer_token_env_var = \"COLLAB_HUB_TOKEN\""),
        "{toml}"
    );
    assert!(!toml.contains("chp_"), "{toml}");
    let codex_token = env_value(&repo.join(".codex/collab-hub.env"), "COLLAB_HUB_TOKEN");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for file in [
            ".codex/collab-hub.env",
            ".gemini/.env",
            ".claude/settings.local.json",
        ] {
            let mode = std::fs::metadata(repo.join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o077,
                0,
                "{file} holds a token: owner only ({mode:o})"
            );
        }
    }
    token_works(&app, &id, &codex_token).await;
    // Codex's hooks: .codex/hooks.json, merged (the user's own Stop hook stays), one collab-hub
    // group per event after two runs, each naming its event; no token in the file.
    let hooks = read_json(&repo.join(".codex/hooks.json"));
    let hooks_text = std::fs::read_to_string(repo.join(".codex/hooks.json")).unwrap();
    assert!(!hooks_text.contains("chp_"), "{hooks_text}");
    for event in [
        "SessionStart",
        "UserPromptSubmit",
        "PostToolUse",
        "PreCompact",
        "Stop",
    ] {
        let groups = hooks["hooks"][event]
            .as_array()
            .unwrap_or_else(|| panic!("{event}: {hooks}"));
        let ours: Vec<&Value> = groups
            .iter()
            .filter(|g| {
                g["hooks"][0]["command"]
                    .as_str()
                    .is_some_and(|c| c.contains(" hook --client codex "))
            })
            .collect();
        assert_eq!(ours.len(), 1, "{event}: {hooks}");
        assert_eq!(
            groups.len(),
            if event == "Stop" { 2 } else { 1 },
            "{event}: {hooks}"
        );
        let group = ours[0];
        assert!(
            group.get("matcher").is_none(),
            "every source and tool: {group}"
        );
        let hook = &group["hooks"][0];
        assert_eq!(hook["type"], "command", "{group}");
        assert_eq!(hook["timeout"], 5, "{group}");
        let command = hook["command"].as_str().unwrap();
        assert!(
            command.ends_with(&format!(
                "hook --client codex --url {} --event {event}",
                app.address
            )),
            "{command}"
        );
    }
    assert_eq!(
        hooks["hooks"]["Stop"][0]["hooks"][0]["command"], "notify-send done",
        "{hooks}"
    );
    // The written SessionStart command, run as Codex runs it (sh -c, the token from the
    // sourced .codex/collab-hub.env in its environment): the briefing in Codex's shape.
    let command = hooks["hooks"]["SessionStart"][0]["hooks"][0]["command"]
        .as_str()
        .unwrap()
        .to_owned();
    let start = run_written(
        command,
        codex_token.clone(),
        codex_input("SessionStart", json!({"source": "startup"})),
    )
    .await;
    assert!(
        codex_output(&start, "SessionStart").contains("you are codex (navigator)"),
        "{start}"
    );
    let (_, view) = app.get(&format!("/mcp/session/{id}")).await;
    let codex = view["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["aiId"] == "codex")
        .expect("codex joined");
    assert_eq!(codex["role"], "navigator");

    // Every token-bearing repository file is ignored; the old .gitignore line stays.
    let ignore = std::fs::read_to_string(repo.join(".gitignore")).unwrap();
    for entry in [
        "target/",
        ".claude/settings.local.json",
        ".gemini/.env",
        ".cursor/mcp.json",
        ".codex/collab-hub.env",
    ] {
        assert_eq!(
            ignore.lines().filter(|l| *l == entry).count(),
            1,
            "{entry}: {ignore}"
        );
    }
    let _ = std::fs::remove_dir_all(&repo);
    let _ = std::fs::remove_dir_all(&home);
}
