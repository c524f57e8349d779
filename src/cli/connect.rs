//! `collab-hub connect claude|gemini|cursor|codex --session ID --as NAME`: gets the participant's
//! token from the running hub and writes that client's configuration for the repository in
//! `--dir` (default: the current directory): the MCP server entry (Streamable HTTP with an
//! `Authorization: Bearer` header) and, for clients with hooks, `collab-hub hook` at each hook
//! point. The token goes only where the client keeps it out of version control:
//!
//! | client | MCP server | hooks | token |
//! |---|---|---|---|
//! | Claude Code | `~/.claude.json` `projects[<dir>].mcpServers` (what `claude mcp add --scope local` writes; `.mcp.json` is committed and settings files hold no servers) | `.claude/settings.local.json` `hooks` | both files; settings.local.json (`env` for the hooks) is added to `.gitignore` |
//! | Gemini CLI | `.gemini/settings.json` `mcpServers` (`httpUrl`, header `Bearer $GEMINI_CLI_COLLAB_HUB_TOKEN`) | same file, `hooks` | `.gemini/.env` (Gemini CLI loads it, in trusted folders), added to `.gitignore` |
//! | Cursor | `.cursor/mcp.json` | none | the file, added to `.gitignore` |
//! | Codex | `.codex/config.toml` `[mcp_servers.collab-hub]` `url` + `bearer_token_env_var` | `.codex/hooks.json` `hooks` (trusted in Codex's `/hooks` before they run) | `.codex/collab-hub.env` (source it before `codex`; the hooks inherit Codex's environment), added to `.gitignore` |
//!
//! JSON files are merged (other keys stay); the TOML file gets collab-hub's lines between
//! marker comments, replaced on the next run.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::Agent;
use crate::client;

/// The MCP server's name in every client's configuration.
pub const SERVER_NAME: &str = "collab-hub";
/// The variable Gemini CLI's MCP header reads the token from (`.gemini/.env` sets it beside
/// `COLLAB_HUB_TOKEN`, which the hooks read). Gemini CLI (0.61) expands `$VAR` in MCP headers
/// from an environment in which it redacts every variable whose name contains `TOKEN`, `KEY`,
/// `AUTH`, … except those starting with `GEMINI_CLI_` (docs/reference/configuration.md,
/// "Environment variable redaction"); and `.gemini/.env` is loaded only after settings.json was
/// expanded. So `$COLLAB_HUB_TOKEN` became `Bearer ` (`gemini mcp list`: Disconnected), while
/// this name survives both steps (tests/api/agent_clis.rs runs the real CLI).
pub const GEMINI_TOKEN_VAR: &str = "GEMINI_CLI_COLLAB_HUB_TOKEN";
const TOML_BEGIN: &str = "# >>> collab-hub (written by `collab-hub connect`; replaced on rerun)";
const TOML_END: &str = "# <<< collab-hub";

/// `collab-hub connect`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ConnectArgs {
    /// claude, gemini, cursor or codex.
    #[arg(value_enum)]
    pub client: Agent,
    /// Session id.
    #[arg(long)]
    pub session: String,
    /// Participant id, e.g. claude.
    #[arg(long = "as", value_name = "NAME")]
    pub participant: String,
    /// Role when joining as a newcomer (driver, navigator, observer) [default: observer].
    #[arg(long)]
    pub role: Option<String>,
    /// The hub.
    #[arg(long, env = "COLLAB_HUB_URL", default_value = super::DEFAULT_HUB_URL)]
    pub url: String,
    /// Show the files instead of writing them.
    #[arg(long)]
    pub print: bool,
    /// The repository to configure.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// The home directory (user-level files: `~/.claude.json`); `$HOME` when run.
    #[arg(skip)]
    pub home: PathBuf,
    /// The hub's operator token (`--operator-token`), when it listens beyond loopback.
    #[arg(skip)]
    pub operator_token: Option<String>,
    /// The `collab-hub` binary the hooks run; this one when run.
    #[arg(skip)]
    pub exe: String,
}

/// One file to write.
#[derive(Debug, Clone)]
pub struct Planned {
    pub path: PathBuf,
    pub content: String,
    pub what: String,
    /// What `--print` shows instead of the whole file (`~/.claude.json` holds much else).
    pub excerpt: Option<String>,
}

/// Gets the token, plans the files, writes them (unless `--print`); returns the report.
pub fn run(args: &ConnectArgs) -> Result<String, String> {
    let (token, how) = participant_token(args)?;
    let files = plan(args, &token)?;
    let mut report = String::new();
    let _ = writeln!(
        report,
        "{} in session {} ({how}); hub {}",
        args.participant, args.session, args.url
    );
    for f in &files {
        if args.print {
            let shown = f.excerpt.as_deref().unwrap_or(&f.content);
            let _ = writeln!(report, "\n=== {} ({})\n{shown}", f.path.display(), f.what);
        } else {
            write_file(&f.path, &f.content, f.content.contains(&token))?;
            let _ = writeln!(report, "wrote {}: {}", f.path.display(), f.what);
        }
    }
    if args.print {
        let _ = writeln!(report, "\n(--print: nothing written)");
    }
    let _ = writeln!(report, "{}", next_step(args.client, &args.dir));
    Ok(report)
}

/// Writes through a temporary file and a rename (a reader never sees half a file), keeping an
/// existing file's permissions; a new file holding the token is readable by its owner only.
fn write_file(path: &Path, content: &str, secret: bool) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".collab-hub.tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, content).map_err(fail)?;
    match std::fs::metadata(path) {
        Ok(old) => std::fs::set_permissions(&tmp, old.permissions()).map_err(fail)?,
        #[cfg(unix)]
        Err(_) if secret => {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(fail)?
        }
        Err(_) => {}
    }
    std::fs::rename(&tmp, path).map_err(fail)
}

fn next_step(client: Agent, dir: &Path) -> String {
    match client {
        Agent::Claude => "Start `claude` in this directory; /mcp lists collab-hub.".into(),
        Agent::Gemini => "Start `gemini` in this directory and trust the folder when asked (in an untrusted folder Gemini CLI reads neither .gemini/settings.json nor .gemini/.env); /mcp lists collab-hub.".into(),
        Agent::Cursor => "Open this directory in Cursor; Settings > MCP lists collab-hub.".into(),
        Agent::Codex => format!(
            "Start Codex with the token in its environment: `. {}/.codex/collab-hub.env && codex`. Trust the project when asked (Codex reads .codex/ only in trusted projects), then open /hooks and trust collab-hub's hooks (Codex runs a new or changed hook only once trusted, and warns at startup while one waits for review).",
            dir.display()
        ),
    }
}

/// A fresh token for a listed participant (`POST /mcp/session/{id}/token`), else joins as a
/// newcomer (`POST /mcp/session/join`).
fn participant_token(args: &ConnectArgs) -> Result<(String, &'static str), String> {
    let base = args.url.trim_end_matches('/');
    let op = args.operator_token.as_deref();
    let url = format!("{base}/mcp/session/{}/token", args.session);
    let (status, answer) = client::request(
        "POST",
        &url,
        op,
        Some(&json!({ "participant": args.participant })),
    )?;
    if status == 200
        && let Some(t) = answer["token"].as_str()
    {
        return Ok((t.to_owned(), "listed participant, fresh token"));
    }
    if answer["error"]["code"] != "participant_not_found" {
        return Err(refusal(&url, status, &answer));
    }
    let url = format!("{base}/mcp/session/join");
    let mut body = json!({ "sessionId": args.session, "participant": args.participant });
    if let Some(role) = &args.role {
        body["role"] = json!(role);
    }
    let (status, answer) = client::request("POST", &url, op, Some(&body))?;
    match answer["token"].as_str() {
        Some(t) if status == 201 || status == 200 => Ok((t.to_owned(), "joined")),
        _ => Err(refusal(&url, status, &answer)),
    }
}

fn refusal(url: &str, status: u16, answer: &Value) -> String {
    let why = answer["error"]["message"]
        .as_str()
        .unwrap_or("unexpected answer");
    format!("{url}: {status}: {why}")
}

/// The files for `args.client`, merged with what is already there.
pub fn plan(args: &ConnectArgs, token: &str) -> Result<Vec<Planned>, String> {
    let base = args.url.trim_end_matches('/');
    let dir = &args.dir;
    let bearer = format!("Bearer {token}");
    let hook = |client: Agent| {
        format!(
            "{} hook --client {client} --url {}",
            shell_quote(&args.exe),
            shell_quote(base)
        )
    };
    let mut files = Vec::new();
    match args.client {
        Agent::Claude => {
            let path = args.home.join(".claude.json");
            let mut doc = read_json(&path)?;
            let project = dir.display().to_string();
            let servers = entry(&mut doc, &["projects", &project, "mcpServers"]);
            servers.insert(
                SERVER_NAME.into(),
                json!({"type": "http", "url": format!("{base}/mcp"), "headers": {"Authorization": bearer}}),
            );
            let mut file = json_file(
                path,
                &doc,
                format!("MCP server for {project} (local scope, not in the repository)"),
            )?;
            let excerpt = json!({"projects": {&project: {"mcpServers": {
                SERVER_NAME: doc["projects"][&project]["mcpServers"][SERVER_NAME].clone()}}}});
            file.excerpt = Some(format!(
                "(merged into the file; only collab-hub's entry shown)\n{}",
                serde_json::to_string_pretty(&excerpt).map_err(|e| e.to_string())?
            ));
            files.push(file);
            let path = dir.join(".claude/settings.local.json");
            let mut doc = read_json(&path)?;
            let env = entry(&mut doc, &["env"]);
            env.insert("COLLAB_HUB_URL".into(), json!(base));
            env.insert("COLLAB_HUB_TOKEN".into(), json!(token));
            let command = hook(Agent::Claude);
            let hooks = entry(&mut doc, &["hooks"]);
            for (event, matcher) in [
                ("SessionStart", None),
                ("UserPromptSubmit", None),
                ("PostToolUse", Some("*")),
                ("PreCompact", None),
                ("Stop", None),
            ] {
                set_hook(hooks, event, matcher, &command, json!(5), false);
            }
            files.push(json_file(
                path,
                &doc,
                "hooks and their env (token; gitignored)".into(),
            )?);
            files.extend(gitignore(dir, ".claude/settings.local.json")?);
        }
        Agent::Gemini => {
            let path = dir.join(".gemini/settings.json");
            let mut doc = read_json(&path)?;
            let servers = entry(&mut doc, &["mcpServers"]);
            servers.insert(
                SERVER_NAME.into(),
                json!({"httpUrl": format!("{base}/mcp-gemini"),
                       "headers": {"Authorization": format!("Bearer ${GEMINI_TOKEN_VAR}")}}),
            );
            // The hooks system is off unless `tools.enableHooks` (gemini-cli docs/hooks/index.md,
            // "Verifying hooks system status"); an explicit choice already there is kept.
            entry(&mut doc, &["tools"])
                .entry("enableHooks")
                .or_insert(json!(true));
            let command = hook(Agent::Gemini);
            let hooks = entry(&mut doc, &["hooks"]);
            for (event, matcher) in [
                ("SessionStart", None),
                ("BeforeAgent", None),
                ("AfterTool", Some(".*")),
                ("PreCompress", None),
                ("AfterAgent", None),
            ] {
                set_hook(hooks, event, matcher, &command, json!(5000), true);
            }
            files.push(json_file(
                path,
                &doc,
                format!("MCP server (token from ${GEMINI_TOKEN_VAR}) and hooks"),
            )?);
            let path = dir.join(".gemini/.env");
            files.push(env_file(path, base, token, "", &[GEMINI_TOKEN_VAR])?);
            files.extend(gitignore(dir, ".gemini/.env")?);
        }
        Agent::Cursor => {
            let path = dir.join(".cursor/mcp.json");
            let mut doc = read_json(&path)?;
            let servers = entry(&mut doc, &["mcpServers"]);
            servers.insert(
                SERVER_NAME.into(),
                json!({"url": format!("{base}/mcp-streaming"), "headers": {"Authorization": bearer}}),
            );
            files.push(json_file(
                path,
                &doc,
                "MCP server (token; gitignored)".into(),
            )?);
            files.extend(gitignore(dir, ".cursor/mcp.json")?);
        }
        Agent::Codex => {
            let path = dir.join(".codex/config.toml");
            let old = read_text(&path)?;
            let server = format!(
                "[mcp_servers.{SERVER_NAME}]\nurl = {}\nbearer_token_env_var = \"COLLAB_HUB_TOKEN\"",
                toml_string(&format!("{base}/mcp"))
            );
            files.push(Planned {
                path,
                content: codex_toml(&old, &server),
                what: "MCP server (token from $COLLAB_HUB_TOKEN)".into(),
                excerpt: None,
            });
            // Codex 0.171 reads lifecycle hooks from the project's .codex/hooks.json (a project
            // config.toml may not set `notify`: Codex ignores it there with a warning). Each
            // command names its event (`--event`), as `/hooks` then shows it.
            let path = dir.join(".codex/hooks.json");
            let mut doc = read_json(&path)?;
            let hooks = entry(&mut doc, &["hooks"]);
            for event in [
                "SessionStart",
                "UserPromptSubmit",
                "PostToolUse",
                "PreCompact",
                "Stop",
            ] {
                // No matcher: every SessionStart source (startup, resume, clear, compact,
                // fork) and every tool.
                let command = format!("{} --event {event}", hook(Agent::Codex));
                set_hook(hooks, event, None, &command, json!(5), false);
            }
            files.push(json_file(
                path,
                &doc,
                "hooks (no token: they read $COLLAB_HUB_TOKEN)".into(),
            )?);
            let path = dir.join(".codex/collab-hub.env");
            files.push(env_file(path, base, token, "export ", &[])?);
            files.extend(gitignore(dir, ".codex/collab-hub.env")?);
        }
    }
    Ok(files)
}

/// Replaces the hook groups that run `collab-hub hook` for `event` with one running `command`.
fn set_hook(
    hooks: &mut Map<String, Value>,
    event: &str,
    matcher: Option<&str>,
    command: &str,
    timeout: Value,
    named: bool,
) {
    let groups = hooks.entry(event).or_insert_with(|| json!([]));
    if !groups.is_array() {
        *groups = json!([]);
    }
    let list = groups.as_array_mut().expect("an array");
    list.retain(|g| {
        !g["hooks"].as_array().is_some_and(|hs| {
            hs.iter().any(|h| {
                h["command"]
                    .as_str()
                    .is_some_and(|c| c.contains(" hook --client "))
            })
        })
    });
    let mut hook = json!({"type": "command", "command": command, "timeout": timeout});
    if named {
        // Gemini CLI: the name `/hooks enable|disable` use.
        hook["name"] = json!(format!("collab-hub-{event}"));
    }
    let mut group = json!({ "hooks": [hook] });
    if let Some(m) = matcher {
        group["matcher"] = json!(m);
    }
    list.push(group);
}

/// The object at `path` in `doc`, created (or replaced, if not an object) as needed.
fn entry<'a>(doc: &'a mut Value, path: &[&str]) -> &'a mut Map<String, Value> {
    let mut at = doc;
    for key in path {
        if !at.is_object() {
            *at = json!({});
        }
        at = at
            .as_object_mut()
            .expect("an object")
            .entry(*key)
            .or_insert_with(|| json!({}));
    }
    if !at.is_object() {
        *at = json!({});
    }
    at.as_object_mut().expect("an object")
}

fn read_text(path: &Path) -> Result<String, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = read_text(path)?;
    if text.trim().is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "{} is not valid JSON ({e}); fix or move it, then rerun",
            path.display()
        )
    })
}

fn json_file(path: PathBuf, doc: &Value, what: String) -> Result<Planned, String> {
    let mut content = serde_json::to_string_pretty(doc).map_err(|e| e.to_string())?;
    content.push('\n');
    Ok(Planned {
        path,
        content,
        what,
        excerpt: None,
    })
}

/// `KEY=value` lines for the URL and token; other lines of an existing file stay.
/// `token_aliases`: more names the token is written under (see `GEMINI_TOKEN_VAR`).
fn env_file(
    path: PathBuf,
    base: &str,
    token: &str,
    prefix: &str,
    token_aliases: &[&str],
) -> Result<Planned, String> {
    let old = read_text(&path)?;
    let ours = |l: &str| {
        let l = l.trim_start().trim_start_matches("export ").trim_start();
        ["COLLAB_HUB_URL", "COLLAB_HUB_TOKEN"]
            .iter()
            .chain(token_aliases)
            .any(|k| l.starts_with(&format!("{k}=")))
    };
    let mut lines: Vec<String> = old
        .lines()
        .filter(|l| !ours(l))
        .map(str::to_owned)
        .collect();
    lines.push(format!("{prefix}COLLAB_HUB_URL={base}"));
    lines.push(format!("{prefix}COLLAB_HUB_TOKEN={token}"));
    for alias in token_aliases {
        lines.push(format!("{prefix}{alias}={token}"));
    }
    Ok(Planned {
        path,
        content: lines.join("\n") + "\n",
        what: "the token (gitignored)".into(),
        excerpt: None,
    })
}

/// `.gitignore` with `entry` added, if it is not there yet.
fn gitignore(dir: &Path, entry: &str) -> Result<Option<Planned>, String> {
    let path = dir.join(".gitignore");
    let old = read_text(&path)?;
    if old
        .lines()
        .any(|l| l.trim() == entry || l.trim() == format!("/{entry}"))
    {
        return Ok(None);
    }
    let mut content = old;
    if !content.is_empty() && !content.ends_with('\n') {
        content.push('\n');
    }
    content.push_str(entry);
    content.push('\n');
    Ok(Some(Planned {
        path,
        content,
        what: format!("ignores {entry}"),
        excerpt: None,
    }))
}

/// `old` without a previous collab-hub block (an earlier version also wrote a `notify` block,
/// which goes too), with the server table last.
fn codex_toml(old: &str, server: &str) -> String {
    let mut kept = Vec::new();
    let mut inside = false;
    for line in old.lines() {
        if line.trim() == TOML_BEGIN {
            inside = true;
        } else if line.trim() == TOML_END {
            inside = false;
        } else if !inside {
            kept.push(line);
        }
    }
    let mut out = String::new();
    let rest = kept.join("\n");
    let rest = rest.trim();
    if !rest.is_empty() {
        let _ = writeln!(out, "{rest}");
    }
    let _ = writeln!(out, "{TOML_BEGIN}\n{server}\n{TOML_END}");
    out
}

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// Quotes for `sh -c` when needed.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:@%+=,".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codex_toml_replaces_its_own_block_and_keeps_the_rest() {
        let first = codex_toml("model = \"o3\"\n[tui]\nx = 1\n", "[mcp_servers.a]");
        assert!(first.starts_with("model = \"o3\""), "{first}");
        let second = codex_toml(&first, "[mcp_servers.b]");
        assert_eq!(second.matches(TOML_BEGIN).count(), 1, "{second}");
        assert!(second.contains("model = \"o3\"") && second.contains("[tui]"));
        assert!(!second.contains("[mcp_servers.a]") && second.contains("[mcp_servers.b]"));
        // The notify block an earlier version wrote goes; the user's own notify stays.
        let old = format!(
            "{TOML_BEGIN}\nnotify = [\"collab-hub\", \"hook\"]\n{TOML_END}\nnotify = [\"mine\"]\n"
        );
        let cleaned = codex_toml(&old, "[mcp_servers.a]");
        assert_eq!(cleaned.matches("notify").count(), 1, "{cleaned}");
        assert!(cleaned.contains("notify = [\"mine\"]"), "{cleaned}");
    }

    #[test]
    fn hooks_are_replaced_not_duplicated() {
        let mut hooks = Map::new();
        set_hook(
            &mut hooks,
            "Stop",
            None,
            "x hook --client claude",
            json!(5),
            false,
        );
        set_hook(
            &mut hooks,
            "Stop",
            None,
            "y hook --client claude",
            json!(5),
            false,
        );
        assert_eq!(hooks["Stop"].as_array().unwrap().len(), 1);
        assert_eq!(shell_quote("/a b/c"), "'/a b/c'");
        assert_eq!(shell_quote("/usr/bin/collab-hub"), "/usr/bin/collab-hub");
    }
}
