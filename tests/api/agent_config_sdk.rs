//! What `collab-hub connect` writes works for an official SDK client: for each client, the MCP
//! URL and headers are read from the file written (expanding the variables the client itself
//! would, from the env file written beside it), and the Python SDK binds with them as the
//! participant named on the command line, with its role. The real CLIs' own checks are in
//! `agent_clis.rs`; Cursor has none here, so this is its end-to-end check.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::agent_setup::{read_json, temp_dir};
use crate::helpers::{Backend, both_backends, clients_dir, spawn_app};
use crate::mcp_sdk::python_clients;

both_backends!(an_sdk_client_configured_from_each_written_file_binds_as_its_participant);

/// `KEY=value` lines (`export ` allowed) of an env file.
fn env_file(path: &Path) -> HashMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter_map(|l| l.trim_start_matches("export ").split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// `$NAME` in `text` replaced from `vars`, as Gemini CLI expands its settings.
fn expand(text: &str, vars: &HashMap<String, String>) -> String {
    let mut out = text.to_owned();
    // Longest names first, so that `$A_B` is not read as `$A` followed by `_B`.
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        out = out.replace(&format!("${name}"), &vars[name]);
    }
    assert!(!out.contains('$'), "an unexpanded variable in {text:?}");
    out
}

/// Binds with the Python SDK at `url` with `headers`: `whoami`'s answer.
fn sdk_whoami(python: &Path, url: &str, headers: &Value) -> Value {
    let out = Command::new(python)
        .arg(clients_dir().join("py_from_config.py"))
        .args([url, &headers.to_string()])
        .current_dir(clients_dir())
        .output()
        .expect("the Python SDK script runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{url}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

async fn an_sdk_client_configured_from_each_written_file_binds_as_its_participant(
    backend: Backend,
) {
    let python = python_clients()
        .as_ref()
        .expect("Python SDK installs")
        .clone();
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, _, _) = app.create_pair("connect-sdk").await;
    let (repo, home) = (temp_dir("sdk-repo"), temp_dir("sdk-home"));
    let (url, sid) = (app.address.clone(), id.clone());
    let (r, h) = (repo.clone(), home.clone());
    let seen = actix_web::rt::task::spawn_blocking(move || {
        let connect = |client: &str, name: &str, role: &str| {
            let out = Command::new(env!("CARGO_BIN_EXE_collab-hub"))
                .args(["connect", client, "--session", &sid, "--as", name])
                .args(["--role", role, "--url", &url])
                .arg("--dir")
                .arg(&r)
                .env("HOME", &h)
                .env("RUST_LOG", "warn")
                .env_remove("COLLAB_HUB_OPERATOR_TOKEN")
                .output()
                .expect("collab-hub connect runs");
            assert!(
                out.status.success(),
                "connect {client}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        // claude was listed at create (connect reissues its token; its role stays); the others
        // join with the role asked for.
        connect("claude", "claude", "observer");
        connect("gemini", "gemini-cli", "observer");
        connect("cursor", "cursor", "observer");
        connect("codex", "codex", "navigator");

        let mut seen = Vec::new();
        // Claude Code: the local-scope entry of this project in ~/.claude.json.
        let claude = read_json(&h.join(".claude.json"));
        let key = r.display().to_string();
        let server = &claude["projects"][&key]["mcpServers"]["collab-hub"];
        assert_eq!(server["type"], "http", "{server}");
        let url = server["url"].as_str().unwrap();
        seen.push(("claude", sdk_whoami(&python, url, &server["headers"])));
        // Gemini CLI: settings.json, its header's variable from .gemini/.env.
        let gemini = read_json(&r.join(".gemini/settings.json"));
        let server = &gemini["mcpServers"]["collab-hub"];
        let vars = env_file(&r.join(".gemini/.env"));
        let headers: serde_json::Map<String, Value> = server["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), json!(expand(v.as_str().unwrap(), &vars))))
            .collect();
        let url = server["httpUrl"].as_str().unwrap();
        seen.push(("gemini-cli", sdk_whoami(&python, url, &json!(headers))));
        // Cursor: .cursor/mcp.json as it is.
        let cursor = read_json(&r.join(".cursor/mcp.json"));
        let server = &cursor["mcpServers"]["collab-hub"];
        let url = server["url"].as_str().unwrap();
        seen.push(("cursor", sdk_whoami(&python, url, &server["headers"])));
        // Codex: the URL from config.toml, the bearer from the variable it names, which the
        // env file written beside it sets.
        let toml = std::fs::read_to_string(r.join(".codex/config.toml")).unwrap();
        let field = |name: &str| {
            let table = &toml[toml.find("[mcp_servers.collab-hub]").expect("codex server")..];
            table
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name} = ")))
                .map(|v| v.trim_matches('"').to_owned())
                .unwrap_or_else(|| panic!("{name} in {toml}"))
        };
        let vars = env_file(&r.join(".codex/collab-hub.env"));
        let token = &vars[&field("bearer_token_env_var")];
        let headers = json!({"Authorization": format!("Bearer {token}")});
        seen.push(("codex", sdk_whoami(&python, &field("url"), &headers)));
        seen
    })
    .await
    .unwrap();

    let (_, session) = app.get(&format!("/mcp/session/{id}")).await;
    let claude_role = session["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["aiId"] == "claude")
        .map(|p| p["role"].as_str().unwrap().to_owned())
        .expect("claude in the session");
    let roles = HashMap::from([
        ("claude", claude_role.as_str()),
        ("gemini-cli", "observer"),
        ("cursor", "observer"),
        ("codex", "navigator"),
    ]);
    for (name, me) in seen {
        assert_eq!(me["aiId"], name, "{me}");
        assert_eq!(me["sessionId"], id.as_str(), "{me}");
        assert_eq!(me["role"], roles[name], "{name}: {me}");
    }
    app.stop().await;
}
