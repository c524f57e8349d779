//! `collab-hub hook --client claude|gemini|codex [--event NAME]`: run by an agent client at its
//! hook points; asks the hub what waits for the participant (`GET /mcp/events/waiting`) and, at
//! session start, for its briefing (`POST /mcp/session/resume` `{"maxTokens": 1500}`), and prints
//! exactly what that client documents for adding context to the model. Nothing waiting, or the
//! hub down or slow: nothing printed, exit 0, within [`BUDGET`]. When what it prints carries the
//! digest, it confirms the critical messages the digest lists in full (`POST
//! /mcp/events/shown`): their senders see them shown to this model (`shownTo`).
//!
//! The documented shapes followed:
//!
//! - Claude Code, hooks reference (<https://code.claude.com/docs/en/hooks>, also
//!   docs.anthropic.com/en/docs/claude-code/hooks): input JSON on stdin with `hook_event_name`
//!   (`SessionStart` with `source` startup|resume|clear|compact, `UserPromptSubmit`,
//!   `PostToolUse`, `PreCompact`, `Stop` with `stop_hook_active`); output on exit 0
//!   `{"hookSpecificOutput": {"hookEventName", "additionalContext"}}` for SessionStart,
//!   UserPromptSubmit and PostToolUse, and `{"decision": "block", "reason"}` for Stop. PreCompact
//!   cannot add context, so the briefing is injected by the `SessionStart` that follows a
//!   compaction (`source: "compact"`); PreCompact itself prints nothing.
//! - Gemini CLI, hooks reference (google-gemini/gemini-cli `docs/hooks/reference.md`,
//!   <https://geminicli.com/docs/hooks/reference>): input JSON on stdin with `hook_event_name`;
//!   stdout must be JSON only; `hookSpecificOutput.additionalContext` for `SessionStart`,
//!   `BeforeAgent` and `AfterTool`; `AfterAgent` `{"decision": "deny", "reason"}` retries the turn
//!   with `reason` as the new prompt (guarded by `stop_hook_active`). `PreCompress` is advisory
//!   (only `systemMessage`, shown to the user, not the model): nothing printed, but the next
//!   `BeforeAgent`/`AfterTool` of that Gemini session (its `session_id`) carries the briefing.
//!   Gemini CLI's own hooks guide (`docs/hooks/index.md`) shows `hookEventName` inside
//!   `hookSpecificOutput` too, as Claude Code's does.
//! - Codex (0.171), lifecycle hooks (<https://developers.openai.com/codex/hooks>; the JSON
//!   schemas of every event's input and output ship inside the `codex` binary): input JSON on
//!   stdin with `session_id`, `transcript_path`, `cwd`, `hook_event_name`, `model`, and per event
//!   `source` (SessionStart: startup|resume|clear|compact|fork), `turn_id` and `prompt`
//!   (UserPromptSubmit), `tool_name`, `tool_input`, `tool_response`, `tool_use_id`
//!   (PostToolUse), `trigger` (PreCompact), `stop_hook_active` and `last_assistant_message`
//!   (Stop). Output: Claude Code's shapes, with no other keys allowed
//!   (`additionalProperties: false`): `{"hookSpecificOutput": {"hookEventName",
//!   "additionalContext"}}` for SessionStart, UserPromptSubmit and PostToolUse (the model reads it
//!   as developer context), `{"decision": "block", "reason"}` for Stop (Codex continues, the
//!   reason its continuation prompt). PreCompact (and PostCompact) accept no context: PreCompact
//!   prints nothing but marks the Codex session (its `session_id`) as compacted, so the
//!   `SessionStart` that follows a compaction, or else the next UserPromptSubmit/PostToolUse,
//!   carries the briefing again, once.
//! - Codex's older `notify` (a user-level `config.toml` key; Codex ignores it in a project's
//!   config): one JSON argument (`{"type": "agent-turn-complete", ...}`), output ignored. Still
//!   read: the call asks the hub (keeping the participant present) and prints nothing.

use std::io::Read;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Agent;
use crate::client;

/// Everything the hook does happens within this (the clients wait for hooks synchronously).
pub const BUDGET: Duration = Duration::from_millis(700);
/// How long the hook waits for the client's input on stdin.
const STDIN_WAIT: Duration = Duration::from_millis(100);
/// The briefing's token budget at session start.
pub const BRIEFING_TOKENS: usize = 1500;
/// Bytes of context injected at most (about [`BRIEFING_TOKENS`] tokens plus the digest).
const MAX_CONTEXT_BYTES: usize = BRIEFING_TOKENS * 4 + 1024;

/// `collab-hub hook`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct HookArgs {
    /// The client running the hook.
    #[arg(long, value_enum)]
    pub client: Agent,
    /// The hook event [default: `hook_event_name` of the input].
    #[arg(long)]
    pub event: Option<String>,
    /// The hub.
    #[arg(long, env = "COLLAB_HUB_URL", default_value = super::DEFAULT_HUB_URL)]
    pub url: String,
    /// The participant's bearer token.
    #[arg(long, env = "COLLAB_HUB_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The input as an argument (Codex's user-level `notify` passes its JSON this way).
    pub payload: Option<String>,
}

/// Runs the hook and returns what to print on stdout (`None`: print nothing). Never fails:
/// every problem ends in `None`, with a line on stderr at most.
pub fn run(args: &HookArgs) -> Option<String> {
    let started = Instant::now();
    let input = match &args.payload {
        Some(raw) => serde_json::from_str(raw).unwrap_or(Value::Null),
        None => read_stdin(STDIN_WAIT),
    };
    let event = args
        .event
        .clone()
        .or_else(|| input["hook_event_name"].as_str().map(str::to_owned))
        .or_else(|| input["type"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let token = args.token.as_deref().filter(|t| !t.is_empty())?;
    let base = args.url.trim_end_matches('/').to_owned();
    let mut plan = Plan::of(args.client, &event);
    let marker = compaction_marker(&input);
    if matches!(
        (args.client, event.as_str()),
        (Agent::Gemini, "PreCompress") | (Agent::Codex, "PreCompact")
    ) {
        // These clients cannot add context here: remember the compaction so that this client
        // session's next context-adding hook carries the briefing again.
        if let Some(m) = &marker {
            let _ = std::fs::write(m, b"");
        }
        return None;
    }
    if matches!(plan, Plan::Context { .. })
        && matches!(args.client, Agent::Gemini | Agent::Codex)
        && marker.is_some_and(|m| std::fs::remove_file(m).is_ok())
    {
        // Briefed again, once (a SessionStart briefs anyway: consuming the marker there keeps
        // the next turn from briefing twice).
        plan = Plan::Context { briefing: true };
    }
    if plan == Plan::Nothing {
        return None;
    }
    let left = BUDGET.saturating_sub(started.elapsed());
    let briefing = (plan == Plan::Context { briefing: true }).then(|| {
        let (url, token) = (format!("{base}/mcp/session/resume"), token.to_owned());
        std::thread::spawn(move || {
            client::request_within(
                "POST",
                &url,
                Some(&token),
                Some(&json!({ "maxTokens": BRIEFING_TOKENS })),
                left,
            )
        })
    });
    let waiting = client::request_within(
        "GET",
        &format!("{base}/mcp/events/waiting"),
        Some(token),
        None,
        left,
    );
    let waiting = match waiting {
        Ok((200, body)) => Some(body),
        Ok((status, body)) => {
            eprintln!("collab-hub hook: hub answered {status}: {body}");
            None
        }
        Err(e) => {
            eprintln!("collab-hub hook: {e}");
            None
        }
    };
    let briefing = briefing
        .and_then(|h| h.join().ok())
        .and_then(|r| r.ok())
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| body);
    let digest = waiting
        .as_ref()
        .and_then(|w| w["digest"].as_str())
        .filter(|d| !d.trim().is_empty());
    let critical = waiting
        .as_ref()
        .and_then(|w| w["critical"].as_array())
        .is_some_and(|c| !c.is_empty());
    // The text the model will read, and whether it carries the whole digest.
    let (out, printed) = match plan {
        Plan::Nothing | Plan::Presence => return None,
        Plan::Context { .. } => {
            let text = compose(briefing.as_ref(), digest)?;
            let whole = digest.is_some_and(|d| text.contains(d));
            (
                json!({"hookSpecificOutput": {"hookEventName": event, "additionalContext": text}})
                    .to_string(),
                whole,
            )
        }
        Plan::BlockStop { deny_word } => {
            let again = input["stop_hook_active"].as_bool().unwrap_or(false);
            if !critical || again {
                return None;
            }
            let reason = format!(
                "collab-hub: a critical event waits for you; read it and act on it (events_ack once handled) before stopping.\n{}",
                digest.unwrap_or("")
            );
            (
                json!({"decision": deny_word, "reason": reason}).to_string(),
                digest.is_some(),
            )
        }
    };
    if printed {
        confirm_shown(&base, token, waiting.as_ref(), started);
    }
    Some(out)
}

/// Tells the hub which critical messages the printed digest lists in full (`listed`): their
/// `shown` receipt (`POST /mcp/events/shown`, `via: hook`). Within what is left of [`BUDGET`];
/// a failure costs the receipt, never the output.
fn confirm_shown(base: &str, token: &str, waiting: Option<&Value>, started: Instant) {
    let Some(ids) = waiting
        .and_then(|w| w["listed"].as_array())
        .filter(|ids| !ids.is_empty())
    else {
        return;
    };
    let left = BUDGET.saturating_sub(started.elapsed());
    if left.is_zero() {
        return;
    }
    let body = json!({"ids": ids, "via": "hook"});
    match client::request_within(
        "POST",
        &format!("{base}/mcp/events/shown"),
        Some(token),
        Some(&body),
        left,
    ) {
        Ok((200, _)) => {}
        Ok((status, body)) => eprintln!("collab-hub hook: shown receipts: {status}: {body}"),
        Err(e) => eprintln!("collab-hub hook: shown receipts: {e}"),
    }
}

/// What one client's event can do with what waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    Nothing,
    /// Ask the hub (which keeps the participant present), print nothing: Codex's `notify`.
    Presence,
    /// Add context for the model (with the briefing at session start).
    Context {
        briefing: bool,
    },
    /// Keep the agent from stopping while a critical event is unread.
    BlockStop {
        deny_word: &'static str,
    },
}

impl Plan {
    fn of(client: Agent, event: &str) -> Plan {
        match (client, event) {
            (Agent::Claude | Agent::Gemini | Agent::Codex, "SessionStart") => {
                Plan::Context { briefing: true }
            }
            (Agent::Claude | Agent::Codex, "UserPromptSubmit" | "PostToolUse")
            | (Agent::Gemini, "BeforeAgent" | "AfterTool") => Plan::Context { briefing: false },
            (Agent::Claude, "Stop" | "SubagentStop") | (Agent::Codex, "Stop") => {
                Plan::BlockStop { deny_word: "block" }
            }
            (Agent::Gemini, "AfterAgent") => Plan::BlockStop { deny_word: "deny" },
            (Agent::Codex, "agent-turn-complete") => Plan::Presence,
            _ => Plan::Nothing,
        }
    }
}

/// The text for the model: the briefing (if any), then the digest (if any), capped.
fn compose(briefing: Option<&Value>, digest: Option<&str>) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(b) = briefing {
        let who = format!(
            "collab-hub: you are {} ({}) in session {}.",
            b["participant"].as_str().unwrap_or("?"),
            b["role"].as_str().unwrap_or("?"),
            b["sessionId"].as_str().unwrap_or("?")
        );
        parts.push(format!("{who}\nBriefing: {}", b["briefing"]));
        let context = &b["context"];
        if context.as_object().is_some_and(|c| !c.is_empty()) {
            let text = context.to_string();
            if text.len() < MAX_CONTEXT_BYTES / 2 {
                parts.push(format!("Shared context: {text}"));
            } else {
                parts.push("Shared context: large; read it with context_get.".into());
            }
        }
    }
    if let Some(d) = digest {
        parts.push(d.to_owned());
    }
    if parts.is_empty() {
        return None;
    }
    let mut text = parts.join("\n\n");
    if text.len() > MAX_CONTEXT_BYTES {
        let mut cut = MAX_CONTEXT_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    Some(text)
}

/// The file that says "this client session was compacted since its last briefing".
fn compaction_marker(input: &Value) -> Option<std::path::PathBuf> {
    let id: String = input["session_id"]
        .as_str()?
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(128)
        .collect();
    (!id.is_empty()).then(|| std::env::temp_dir().join(format!("collab-hub-compacted-{id}")))
}

/// The client's hook input: JSON on stdin, read on a thread so a stdin left open (or a
/// terminal) cannot hold the hook up beyond `wait`.
fn read_stdin(wait: Duration) -> Value {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut raw = String::new();
        let _ = std::io::stdin().lock().read_to_string(&mut raw);
        let _ = tx.send(raw);
    });
    rx.recv_timeout(wait)
        .ok()
        .and_then(|raw| serde_json::from_str(&raw).ok())
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_follow_each_clients_documented_events() {
        assert_eq!(
            Plan::of(Agent::Claude, "SessionStart"),
            Plan::Context { briefing: true }
        );
        assert_eq!(
            Plan::of(Agent::Gemini, "AfterTool"),
            Plan::Context { briefing: false }
        );
        assert_eq!(
            Plan::of(Agent::Gemini, "AfterAgent"),
            Plan::BlockStop { deny_word: "deny" }
        );
        assert_eq!(Plan::of(Agent::Claude, "PreCompact"), Plan::Nothing);
        assert_eq!(Plan::of(Agent::Gemini, "PreCompress"), Plan::Nothing);
        assert_eq!(
            Plan::of(Agent::Codex, "agent-turn-complete"),
            Plan::Presence
        );
        assert_eq!(
            Plan::of(Agent::Codex, "SessionStart"),
            Plan::Context { briefing: true }
        );
        assert_eq!(
            Plan::of(Agent::Codex, "PostToolUse"),
            Plan::Context { briefing: false }
        );
        assert_eq!(
            Plan::of(Agent::Codex, "Stop"),
            Plan::BlockStop { deny_word: "block" }
        );
        assert_eq!(Plan::of(Agent::Codex, "PreCompact"), Plan::Nothing);
    }

    #[test]
    fn compose_caps_the_text() {
        assert_eq!(compose(None, None), None);
        let long = "x".repeat(MAX_CONTEXT_BYTES * 2);
        let text = compose(None, Some(&long)).unwrap();
        assert!(text.len() <= MAX_CONTEXT_BYTES + 3);
    }
}
