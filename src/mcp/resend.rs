//! Which MCP posts a hub may run again, where their project is served next, after the hub it
//! passed them on to died with them in flight (`http::hop`). HTTP calls every POST unsafe, but most MCP traffic is reads
//! posted as JSON-RPC: above all the long poll (`events_poll {waitSecs}`) that an agent keeps
//! waiting, which a killed hub would otherwise turn into an error for every waiting agent.
//! A post is resent only if each message in it changes nothing the client could see twice.

use actix_web::http::Method;
use serde_json::Value;

use super::tools;

/// Whether `body` (an MCP POST) may be sent again: every message in it (one, or a batch) is a
/// request or notification that only reads, or sets what it sets to the same value again.
/// Anything not understood (not JSON, a response to the server) is not.
pub fn safe_to_resend(body: &[u8]) -> bool {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(batch)) => !batch.is_empty() && batch.iter().all(safe_message),
        Ok(message) => safe_message(&message),
        Err(_) => false,
    }
}

fn safe_message(message: &Value) -> bool {
    let Some(method) = message["method"].as_str() else {
        // A response to a request of the server's: not ours to repeat.
        return false;
    };
    match method {
        // Reads, and settings that are the same when set twice.
        "ping"
        | "tools/list"
        | "resources/list"
        | "resources/templates/list"
        | "prompts/list"
        | "logging/setLevel"
        | "resources/subscribe"
        | "resources/unsubscribe" => true,
        // A second MCP session; the first, if it was made, is never used and expires.
        "initialize" => true,
        // Notifications (`initialized`, `cancelled`) change nothing a second time.
        m if m.starts_with("notifications/") => true,
        "tools/call" => {
            let params = &message["params"];
            let (name, arguments) = (params["name"].as_str(), &params["arguments"]);
            name.and_then(tools::find)
                .is_some_and(|tool| tool.reads(arguments))
                || BEAR_APPLYING_TWICE
                    .iter()
                    .any(|w| w.covers_call(name, arguments["action"].as_str()))
        }
        // Not `resources/read` nor `prompts/get`: what they record (an inbox's messages
        // delivered, a resume's briefing) is only stamped once and would bear asking twice,
        // but no waiting agent needs them sent again, so they keep the plain rule. Nor
        // anything unknown.
        _ => false,
    }
}

/// A write a hub runs again, with the key it gave it (`api::REQUEST_KEY`), after the hub
/// serving it died before answering: its tool (and action) and its REST route (a route ending
/// in `/` takes a path parameter). Where it runs next it is applied if it was not, and answers
/// `already_applied` if it was (`actors::session::Keyed`). Each of these is tested to record
/// its key, whatever turn its write is queued in (`tests/api/resend_writes.rs`); any other
/// write keeps the 503 "may have been applied". A route's `{}` segment is a path parameter; an
/// entry without an action covers the tool whatever its arguments.
const MESSAGES_READ: &str = "messages_read";

struct ResentWrite {
    /// Empty: no tool.
    tool: &'static str,
    action: Option<&'static str>,
    /// Empty: no REST route.
    route: &'static str,
}

impl ResentWrite {
    /// Whether a call of tool `name` with argument `action` is this write.
    fn covers_call(&self, name: Option<&str>, action: Option<&str>) -> bool {
        !self.tool.is_empty()
            && Some(self.tool) == name
            && (self.action.is_none() || self.action == action)
    }

    /// Whether a request to `path` is this write.
    fn covers_route(&self, path: &str) -> bool {
        !self.route.is_empty() && on_route(self.route, path)
    }
}

const RESENT_WRITES: &[ResentWrite] = &[
    // A read that marks what it returns read: sent again with its key, it gets the page it
    // first answered (REST: a GET, keyed by `http::forward` too).
    ResentWrite {
        tool: MESSAGES_READ,
        action: None,
        route: "/mcp/messages",
    },
    ResentWrite {
        tool: "message_send",
        action: None,
        route: "/mcp/messages/send",
    },
    ResentWrite {
        tool: "message_ack",
        action: None,
        route: "/mcp/messages/ack",
    },
    ResentWrite {
        tool: "context_set",
        action: None,
        route: "/mcp/context/set",
    },
    ResentWrite {
        tool: "context_append",
        action: None,
        route: "/mcp/context/append/{}",
    },
    ResentWrite {
        tool: "context_delete",
        action: None,
        route: "/mcp/context/delete/{}",
    },
    ResentWrite {
        tool: "lock",
        action: Some("acquire"),
        route: "/mcp/collaborate/lock",
    },
    ResentWrite {
        tool: "lock",
        action: Some("renew"),
        route: "/mcp/collaborate/lock/renew",
    },
    ResentWrite {
        tool: "lock",
        action: Some("release"),
        route: "/mcp/collaborate/lock/release",
    },
    ResentWrite {
        tool: "status_report",
        action: None,
        route: "/mcp/collaborate/status",
    },
    ResentWrite {
        tool: "checkpoint",
        action: Some("begin"),
        route: "/mcp/collaborate/checkpoint",
    },
    ResentWrite {
        tool: "checkpoint",
        action: Some("end"),
        route: "/mcp/collaborate/checkpoint/end",
    },
    ResentWrite {
        tool: "task",
        action: Some("create"),
        route: "/mcp/collaborate/task",
    },
    ResentWrite {
        tool: "task",
        action: Some("update"),
        route: "/mcp/collaborate/task/update",
    },
    ResentWrite {
        tool: "changes",
        action: Some("record"),
        route: "/mcp/collaborate/change",
    },
    ResentWrite {
        tool: "suggestion",
        action: Some("submit"),
        route: "/mcp/collaborate/suggestion",
    },
    ResentWrite {
        tool: "suggestion",
        action: Some("resolve"),
        route: "/mcp/collaborate/suggestion/resolve",
    },
    ResentWrite {
        tool: "task",
        action: Some("assign"),
        route: "/mcp/collaborate/task/assign",
    },
    ResentWrite {
        tool: "task",
        action: Some("handoff"),
        route: "/mcp/collaborate/task/handoff",
    },
    ResentWrite {
        tool: "task",
        action: Some("claim"),
        route: "/mcp/collaborate/task/claim",
    },
    // One REST route for the three actions, each an `AtomicResponse` of the session.
    ResentWrite {
        tool: "role",
        action: Some("request"),
        route: "/mcp/collaborate/role",
    },
    ResentWrite {
        tool: "role",
        action: Some("respond"),
        route: "/mcp/collaborate/role",
    },
    ResentWrite {
        tool: "role",
        action: Some("assign"),
        route: "/mcp/collaborate/role",
    },
    ResentWrite {
        tool: "memory",
        action: Some("push"),
        route: "/mcp/context/memory/push",
    },
    ResentWrite {
        tool: "memory",
        action: Some("clear"),
        route: "/mcp/context/memory/clear",
    },
    // Without observations or preferences it reads, which is safe to send again anyway.
    ResentWrite {
        tool: "notes",
        action: None,
        route: "/mcp/context/notes/{}",
    },
    ResentWrite {
        tool: "dispute",
        action: Some("raise"),
        route: "/mcp/collaborate/dispute",
    },
    ResentWrite {
        tool: "dispute",
        action: Some("resolve"),
        route: "/mcp/collaborate/dispute/resolve",
    },
    ResentWrite {
        tool: "discovery_report",
        action: None,
        route: "/mcp/context/discovery",
    },
    // A batch commits all its operations or none, in one write.
    ResentWrite {
        tool: "batch",
        action: None,
        route: "/mcp/batch",
    },
    ResentWrite {
        tool: "context_sync",
        action: None,
        route: "/mcp/context/sync",
    },
    ResentWrite {
        tool: "handshake",
        action: None,
        route: "/mcp/collaborate/handshake",
    },
    ResentWrite {
        tool: "dispute",
        action: Some("vote"),
        route: "/mcp/collaborate/dispute/vote",
    },
    ResentWrite {
        tool: "session_status",
        action: None,
        route: "/mcp/session/{}/status",
    },
    ResentWrite {
        tool: "session_leave",
        action: None,
        route: "/mcp/session/leave",
    },
    // These answer with tokens, which an `already_applied` would lose: sent again after they
    // were applied, they answer new tokens for the participants they made (the first ones,
    // never delivered, stop working), and apply nothing else.
    ResentWrite {
        tool: "session_create",
        action: None,
        route: "/mcp/session/create",
    },
    ResentWrite {
        tool: "session_join",
        action: None,
        route: "/mcp/session/join",
    },
];

/// Writes a hub runs again *without* a key: applied twice, they leave what once would
/// (an acknowledgement moves a cursor forward only, a receipt is stamped once, a snapshot more
/// is a snapshot), or the second answer is as good as the lost one (a token reissued again
/// gives a new token, and the first, lost with its answer, stops working; a resume answers a
/// briefing again).
const BEAR_APPLYING_TWICE: &[ResentWrite] = &[
    ResentWrite {
        tool: "events_ack",
        action: None,
        route: "",
    },
    ResentWrite {
        tool: "session",
        action: Some("save"),
        route: "/mcp/session/save",
    },
    ResentWrite {
        tool: "",
        action: None,
        route: "/mcp/session/resume",
    },
    ResentWrite {
        tool: "",
        action: None,
        route: "/mcp/session/export",
    },
    ResentWrite {
        tool: "",
        action: None,
        route: "/mcp/events/shown",
    },
    ResentWrite {
        tool: "",
        action: None,
        route: "/mcp/session/{}/token",
    },
];

/// Whether a REST POST to `path` may be sent again as it is (`BEAR_APPLYING_TWICE`).
pub fn rest_bears_applying_twice(method: &Method, path: &str) -> bool {
    method == Method::POST && BEAR_APPLYING_TWICE.iter().any(|w| w.covers_route(path))
}

/// Whether `path` is `route`, whose `{}` segments match any one non-empty segment.
fn on_route(route: &str, path: &str) -> bool {
    let (mut route, mut path) = (route.split('/'), path.split('/'));
    loop {
        match (route.next(), path.next()) {
            (None, None) => return true,
            (Some("{}"), Some(segment)) if !segment.is_empty() => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// Whether a request is an MCP post that only reads (a long poll above all): as safe to send
/// twice as a GET.
pub fn mcp_reads_only(method: &Method, path: &str, body: &[u8]) -> bool {
    method == Method::POST && super::PATHS.contains(&path) && safe_to_resend(body)
}

/// Whether a request is a write a hub may run again with its key: one of
/// `RESENT_WRITES`, alone (an MCP batch is not).
pub fn resent_with_key(method: &Method, path: &str, body: &[u8]) -> bool {
    // The read that writes (it marks what it returns read) is a GET on REST; the others POSTs.
    let read = |w: &ResentWrite| w.tool == MESSAGES_READ;
    if method == Method::GET {
        return RESENT_WRITES
            .iter()
            .any(|w| read(w) && w.covers_route(path));
    }
    if method != Method::POST {
        return false;
    }
    if !super::PATHS.contains(&path) {
        return RESENT_WRITES
            .iter()
            .any(|w| !read(w) && w.covers_route(path));
    }
    let Ok(message) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    if message["method"] != "tools/call" {
        return false;
    }
    let (name, action) = (
        message["params"]["name"].as_str(),
        message["params"]["arguments"]["action"].as_str(),
    );
    RESENT_WRITES.iter().any(|w| w.covers_call(name, action))
}

#[cfg(test)]
mod tests {
    use super::{resent_with_key, safe_to_resend};
    use actix_web::http::Method;
    const POST: Method = Method::POST;
    use serde_json::json;

    fn safe(v: serde_json::Value) -> bool {
        safe_to_resend(v.to_string().as_bytes())
    }

    fn call(name: &str, arguments: serde_json::Value) -> serde_json::Value {
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
               "params": {"name": name, "arguments": arguments}})
    }

    #[test]
    fn reading_tools_are_sent_again() {
        assert!(safe(call("events_poll", json!({"waitSecs": 30}))));
        assert!(safe(call("context_get", json!({"path": "a"}))));
        assert!(safe(call("whoami", json!({}))));
        // A grouped tool's reading action.
        assert!(safe(call("lock", json!({"action": "list"}))));
    }

    #[test]
    fn writing_tools_are_not() {
        assert!(!safe(call("context_set", json!({"path": "a", "value": 1}))));
        assert!(!safe(call("message_send", json!({"content": "hi"}))));
        // Marks what it returns read.
        assert!(!safe(call("messages_read", json!({}))));
        assert!(!safe(call("lock", json!({"action": "acquire"}))));
        assert!(!safe(call("lock", json!({}))));
        assert!(!safe(call("no_such_tool", json!({}))));
        assert!(!safe(
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call"})
        ));
    }

    /// A tool call a hub passed on to a hub that died is run again, whatever it is: as
    /// a read, as a write that bears applying twice, or with a key. None is answered 503.
    #[test]
    fn every_tool_and_action_is_sent_again_one_way_or_another() {
        let mut checked = 0;
        for tool in super::tools::CATALOGUE {
            let schema = tool.describe()["inputSchema"].clone();
            let actions: Vec<Option<String>> =
                match schema["properties"]["action"]["enum"].as_array() {
                    Some(actions) => actions
                        .iter()
                        .map(|a| Some(a.as_str().expect("an action name").to_owned()))
                        .collect(),
                    None => vec![None],
                };
            for action in actions {
                let arguments = match &action {
                    Some(a) => json!({ "action": a }),
                    None => json!({}),
                };
                let c = call(tool.name, arguments);
                let keyed = resent_with_key(&POST, "/mcp", c.to_string().as_bytes());
                assert!(safe(c) || keyed, "{} {action:?} would be 503", tool.name);
                checked += 1;
            }
        }
        assert!(
            checked > 50,
            "the grouped tools' actions were found: {checked}"
        );
    }

    #[test]
    fn writes_that_bear_applying_twice_go_again_without_a_key() {
        assert!(safe(call("events_ack", json!({"upTo": 3}))));
        assert!(safe(call("session", json!({"action": "save"}))));
        assert!(!safe(call("session", json!({"action": "nonsense"}))));
        let rest = |path: &str| super::rest_bears_applying_twice(&POST, path);
        assert!(rest("/mcp/session/0b5d/token"));
        assert!(rest("/mcp/events/shown"));
        assert!(rest("/mcp/session/save"));
        assert!(!rest("/mcp/session/0b5d/status"));
        assert!(!rest("/mcp/messages/send"));
        assert!(!super::rest_bears_applying_twice(
            &Method::DELETE,
            "/mcp/events/shown"
        ));
    }

    #[test]
    fn protocol_methods() {
        for method in [
            "ping",
            "tools/list",
            "initialize",
            "notifications/initialized",
        ] {
            assert!(
                safe(json!({"jsonrpc": "2.0", "id": 1, "method": method})),
                "{method}"
            );
        }
        for method in ["resources/read", "prompts/get", "sampling/unknown"] {
            assert!(
                !safe(json!({"jsonrpc": "2.0", "id": 1, "method": method})),
                "{method}"
            );
        }
        // A response to the server.
        assert!(!safe(json!({"jsonrpc": "2.0", "id": 1, "result": {}})));
        assert!(!safe_to_resend(b"not json"));
    }

    #[test]
    fn the_writes_resent_with_a_key() {
        let post = |v: serde_json::Value| resent_with_key(&POST, "/mcp", v.to_string().as_bytes());
        assert!(post(call("message_send", json!({"content": "hi"}))));
        assert!(post(call(
            "lock",
            json!({"action": "acquire", "files": ["a"]})
        )));
        assert!(!post(call("lock", json!({"action": "list"}))));
        assert!(!post(call("lock", json!({}))));
        assert!(post(call("task", json!({"action": "create"}))));
        assert!(post(call("task", json!({"action": "assign"}))));
        assert!(post(call("task", json!({"action": "claim"}))));
        assert!(!post(call("task", json!({"action": "list"}))));
        assert!(post(call("handshake", json!({"step": "work_complete"}))));
        assert!(post(call("session_status", json!({"action": "pause"}))));
        assert!(post(call("dispute", json!({"action": "vote"}))));
        assert!(!post(call("dispute", json!({"action": "list"}))));
        assert!(
            !post(call("events_ack", json!({"upTo": 3}))),
            "sent again, but unkeyed"
        );
        // A batch, even of one covered write.
        assert!(!post(json!([call(
            "message_send",
            json!({"content": "hi"})
        )])));
        assert!(resent_with_key(&POST, "/mcp/messages/send", b"{}"));
        assert!(resent_with_key(&POST, "/mcp/context/append/notes", b"{}"));
        assert!(!resent_with_key(&POST, "/mcp/context/append/", b"{}"));
        assert!(!resent_with_key(&POST, "/mcp/context/append/a/b", b"{}"));
        assert!(resent_with_key(&POST, "/mcp/collaborate/task", b"{}"));
        assert!(resent_with_key(&POST, "/mcp/collaborate/task/claim", b"{}"));
        assert!(resent_with_key(&POST, "/mcp/collaborate/handshake", b"{}"));
        assert!(resent_with_key(&POST, "/mcp/session/create", b"{}"));
        let status = |path: &str| resent_with_key(&POST, path, b"{}");
        assert!(status("/mcp/session/0b5d/status"));
        assert!(!status("/mcp/session//status"));
        assert!(!status("/mcp/session/0b5d/token"));
        assert!(!status("/mcp/session/0b5d/status/x"));
        // The read of messages marks them read: a GET with a key.
        assert!(resent_with_key(&Method::GET, "/mcp/messages", b""));
        assert!(!resent_with_key(&POST, "/mcp/messages", b"{}"));
        assert!(!resent_with_key(&Method::GET, "/mcp/context/get", b""));
    }

    /// An entry without an action covers every action of its tool: so it must have no
    /// reading ones, or a read would be taken for a write.
    #[test]
    fn an_entry_without_an_action_names_a_tool_without_reading_actions() {
        for w in super::RESENT_WRITES.iter().filter(|w| w.action.is_none()) {
            let tool = super::tools::find(w.tool).unwrap_or_else(|| panic!("{}", w.tool));
            assert!(tool.read_actions.is_empty(), "{}", w.tool);
        }
    }

    #[test]
    fn a_batch_is_safe_only_if_every_message_is() {
        let read = call("context_get", json!({"path": "a"}));
        let write = call("context_set", json!({"path": "a", "value": 1}));
        assert!(safe(
            json!([read.clone(), {"jsonrpc": "2.0", "id": 2, "method": "ping"}])
        ));
        assert!(!safe(json!([read, write])));
        assert!(!safe(json!([])));
    }
}
