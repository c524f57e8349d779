//! What each logged event says: one line of text, and the longer detail worth keeping (a
//! message's body, review feedback, a report's details). Built only from the payload the event
//! was logged with; an unknown kind is still shown by its name and summary.

use serde_json::Value;

use super::{Logged, TEXT_CHARS};

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

fn num(v: &Value, key: &str) -> String {
    match &v[key] {
        Value::Number(n) => format!("#{n}"),
        Value::String(t) if !t.is_empty() => format!("#{t}"),
        _ => "#?".into(),
    }
}

/// Text of a JSON value: a string as it is, anything else as compact JSON.
fn plain(v: &Value) -> String {
    match v {
        Value::String(t) => t.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Text of a JSON value for a detail block: strings as they are, the rest pretty-printed.
fn block(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(t) if t.trim().is_empty() => None,
        Value::String(t) => Some(t.clone()),
        other => serde_json::to_string_pretty(other).ok(),
    }
}

/// `" (why)"` when `why` says something.
fn paren(why: &str) -> String {
    match why.trim() {
        "" => String::new(),
        w => format!(" ({w})"),
    }
}

/// `": what"` when `what` says something.
fn colon(what: &str) -> String {
    match what.trim() {
        "" => String::new(),
        w => format!(": {w}"),
    }
}

fn list(v: &Value) -> String {
    v.as_array()
        .map(|a| a.iter().map(plain).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

/// `text` on one line of at most `TEXT_CHARS` characters; the second value says it was cut.
fn one_line(text: &str) -> (String, bool) {
    let flat: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let multi_line = text.trim().contains('\n');
    match flat.char_indices().nth(TEXT_CHARS) {
        None => (flat, multi_line),
        Some((i, _)) => (format!("{}…", &flat[..i]), true),
    }
}

/// The event's one-line text and its detail.
pub(super) fn describe(e: &Logged) -> (String, Option<String>) {
    let Some(p) = &e.payload else {
        return (
            format!(
                "{} (its {} byte payload is too large to show)",
                e.kind.replace('_', " "),
                e.payload_bytes
            ),
            None,
        );
    };
    let (text, detail) = says(e.id, &e.kind, p);
    let (line, cut) = one_line(&text);
    // What the line could not hold goes to the detail, unless the detail says it already.
    let detail = match detail {
        Some(d) => Some(d),
        None if cut => Some(text),
        None => None,
    };
    (line, detail)
}

/// `id` is the event's: a task's id is the id of its `task_created` event.
fn says(id: i64, kind: &str, p: &Value) -> (String, Option<String>) {
    let none = |t: String| (t, None);
    match kind {
        "session_created" => none(format!(
            "created the session “{}” ({} handshake, participants: {})",
            s(p, "name"),
            s(p, "handshakeMode"),
            p["participants"]
                .as_array()
                .map(|a| a
                    .iter()
                    .map(|x| format!("{} {}", s(x, "aiId"), s(x, "role")))
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default()
        )),
        "session_status_changed" => none(format!(
            "set the session {} (was {})",
            s(p, "to"),
            s(p, "from")
        )),
        "participant_joined" => none(format!(
            "{} joined as {}",
            s(&p["participant"], "aiId"),
            s(&p["participant"], "role")
        )),
        "participant_left" => none(format!("{} left (was {})", s(p, "aiId"), s(p, "role"))),
        "token_reissued" => none(format!("{} got a fresh token", s(p, "aiId"))),
        "message_sent" => {
            let to = match p["to"].as_str() {
                Some(t) => format!("to {t}"),
                None => "to everyone".into(),
            };
            let mut flags = Vec::new();
            if let Some(r) = p["replyTo"].as_i64() {
                flags.push(format!("reply to #{r}"));
            }
            if p["requiresAck"] == true {
                flags.push("acknowledgement required".into());
            }
            let body = plain(&p["body"]);
            let (line, cut) = one_line(&body);
            (
                format!("message {to}{}: {line}", paren(&flags.join(", "))),
                cut.then(|| block(&p["body"])).flatten(),
            )
        }
        "message_acked" => none(format!(
            "{} acknowledged message(s) {}",
            s(p, "by"),
            id_list(&p["ids"])
        )),
        "message_ack_overdue" => none(format!(
            "message {} not acknowledged by {} before {}",
            num(p, "id"),
            list(&p["notAcknowledgedBy"]),
            s(p, "deadline")
        )),
        "handshake" => handshake(p),
        "control_passed" | "review_overdue" | "lock_force_released" | "change_conflict" => {
            let file = s(p, "filePath");
            none(if kind == "change_conflict" {
                format!("conflict on {file}: {}", s(p, "summary"))
            } else {
                s(p, "summary").to_owned()
            })
        }
        "role_requested" => none(format!(
            "{} asks to become {}{}",
            s(p, "aiId"),
            s(p, "role"),
            colon(s(p, "reason"))
        )),
        "role_request_refused" => none(format!(
            "refused {}'s request to become {}{}",
            s(p, "aiId"),
            s(p, "role"),
            colon(s(p, "note"))
        )),
        "role_changed" => none(format!(
            "roles changed: {}{}",
            s(p, "summary"),
            paren(s(p, "reason"))
        )),
        "role_change_pending" => none(format!(
            "role change pending until the open handshake closes: {}{}",
            p["roles"]
                .as_object()
                .map(|o| o
                    .iter()
                    .map(|(k, v)| format!("{k} → {}", plain(v)))
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default(),
            paren(s(p, "reason"))
        )),
        "task_created" => {
            let t = &p["task"];
            let assigned = match t["assignedTo"].as_str() {
                Some(a) => format!(" (assigned to {a})"),
                None => String::new(),
            };
            let parent = match t["parent"].as_i64() {
                Some(n) => format!(" (subtask of #{n})"),
                None => String::new(),
            };
            none(format!(
                "created task #{id}{parent}{assigned}: {}",
                s(t, "description")
            ))
        }
        "task_assigned" => none(format!(
            "assigned task {}{}: {}",
            num(p, "taskId"),
            match s(p, "how") {
                "" | "assigned" => String::new(),
                how => format!(" (by {how})"),
            },
            s(p, "description")
        )),
        "task_status_changed" => {
            let (from, to) = (s(p, "from"), s(p, "to"));
            let change = if from == to || from.is_empty() {
                to.to_owned()
            } else {
                format!("{from} → {to}")
            };
            let who = match p["assignedTo"].as_str() {
                Some(a) => format!(" (assigned to {a})"),
                None => String::new(),
            };
            none(format!(
                "task {}: {change}{who}{}",
                num(p, "taskId"),
                colon(s(p, "reason"))
            ))
        }
        "task_handed_off" => (
            format!(
                "handed off task {}: {}",
                num(p, "taskId"),
                s(p, "description")
            ),
            block(&p["context"]).or_else(|| block(&p["handoff"]["context"])),
        ),
        "task_claimed" => none(format!("claimed task {}", num(p, "taskId"))),
        "resource_locked" => none(format!(
            "locked {} ({}, token {}) until {}{}",
            s(p, "resource"),
            s(p, "mode"),
            plain(&p["token"]),
            s(p, "until"),
            colon(s(p, "operation"))
        )),
        "lock_queued" => none(format!(
            "waits for {} ({}) behind {}",
            s(p, "resource"),
            s(p, "mode"),
            id_list(&p["behind"])
        )),
        "resource_released" => none(format!(
            "{}'s lock on {} released ({})",
            s(p, "by"),
            s(p, "resource"),
            plain(&p["reason"])
        )),
        "lock_renewed" => none(format!(
            "renewed the lock on {} until {}",
            s(p, "resource"),
            s(p, "until")
        )),
        "change_recorded" => {
            let op = match s(p, "operation") {
                "" => "edit",
                o => o,
            };
            let renamed = match p["newPath"].as_str() {
                Some(n) => format!(" → {n}"),
                None => String::new(),
            };
            let mut extra = Vec::new();
            if let Some(lines) = p["lines"].as_array().filter(|a| !a.is_empty()) {
                let spans: Vec<String> = lines
                    .iter()
                    .filter_map(|r| Some((r.get(0)?.as_u64()?, r.get(1)?.as_u64()?)))
                    .map(|(a, b)| {
                        if a == b {
                            a.to_string()
                        } else {
                            format!("{a}–{b}")
                        }
                    })
                    .collect();
                extra.push(format!("lines {}", spans.join(", ")));
            }
            if let Some(sym) = p["symbols"].as_array().filter(|a| !a.is_empty()) {
                extra.push(format!("symbols {}", list(&Value::Array(sym.clone()))));
            }
            if let Some(t) = p["taskId"].as_i64() {
                extra.push(format!("task #{t}"));
            }
            if let Some(sg) = p["suggestion"].as_i64() {
                extra.push(format!(
                    "suggestion #{sg}, accepted by {}",
                    p["coAuthor"].as_str().unwrap_or("the operator")
                ));
            }
            none(format!(
                "{op} {}{renamed}{}{}",
                s(p, "filePath"),
                paren(&extra.join("; ")),
                colon(s(p, "reason"))
            ))
        }
        "suggestion_submitted" => none(format!(
            "suggests a change to {}{}",
            s(p, "filePath"),
            colon(s(p, "reason"))
        )),
        "suggestion_resolved" => none(format!(
            "{} suggestion {}{}",
            if p["accepted"] == true {
                "accepted"
            } else {
                "rejected"
            },
            num(p, "id"),
            colon(s(p, "note"))
        )),
        "status_reported" => {
            let recovered = if p["recovered"] == true {
                " (recovered)"
            } else {
                ""
            };
            let details = p["changes"]
                .as_array()
                .and_then(|c| c.first())
                .map(|c| &c["new"]["details"])
                .and_then(block);
            (
                format!(
                    "{} {}{recovered}: {}",
                    s(p, "kind"),
                    s(p, "status"),
                    s(p, "summary")
                ),
                details,
            )
        }
        "discovery_reported" => {
            let d = &p["discovery"];
            none(format!(
                "{} discovery: {}{}",
                s(d, "severity"),
                s(d, "finding"),
                paren(s(d, "location"))
            ))
        }
        "context_changed" | "memory_pushed" | "memory_cleared" | "notes_updated" => {
            let what = match kind {
                "context_changed" => "updated the shared context",
                "memory_pushed" => "pushed to working memory",
                "memory_cleared" => "cleared working memory",
                _ => "updated its notes",
            };
            let paths: Vec<&str> = p["changes"]
                .as_array()
                .map(|c| c.iter().filter_map(|c| c["path"].as_str()).collect())
                .unwrap_or_default();
            let shown = paths.iter().take(8).copied().collect::<Vec<_>>().join(", ");
            let more = match paths.len() {
                n if n > 8 => format!(" and {} more", n - 8),
                _ => String::new(),
            };
            none(format!("{what}{}", colon(&format!("{shown}{more}"))))
        }
        "checkpoint_begun" => none(format!(
            "began a checkpoint: {} (about {}s{})",
            s(p, "task"),
            plain(&p["estimatedSecs"]),
            if p["interruptible"] == false {
                ", not interruptible"
            } else {
                ""
            }
        )),
        "checkpoint_ended" => none(format!(
            "ended the checkpoint {} after {}s ({})",
            s(p, "task"),
            plain(&p["ranSecs"]),
            plain(&p["reason"])
        )),
        other => {
            let words = other.replace('_', " ");
            none(match p["summary"].as_str() {
                Some(summary) => format!("{words}: {summary}"),
                None => words,
            })
        }
    }
}

/// The handshake's steps.
fn handshake(p: &Value) -> (String, Option<String>) {
    let id = num(p, "handshakeId");
    match s(p, "step") {
        "work_complete" => (
            format!(
                "work complete{}: {}",
                if p["needsReview"] == false {
                    " (no review needed)"
                } else {
                    ", review requested"
                },
                list(&p["changes"])
            ),
            block(&p["message"]),
        ),
        "review_start" => (
            format!("{} started reviewing handshake {id}", s(p, "reviewer")),
            None,
        ),
        "review_complete" => {
            let f = &p["feedback"];
            let verdict = if f["approved"] == true {
                "approved"
            } else {
                "changes requested"
            };
            let control = if p["passControl"] == true {
                "; control passed back"
            } else {
                ""
            };
            let mut detail = Vec::new();
            for (name, key) in [("Suggestions", "suggestions"), ("Issues", "issues")] {
                if let Some(items) = f[key].as_array().filter(|a| !a.is_empty()) {
                    detail.push(format!("{name}:"));
                    detail.extend(items.iter().map(|i| format!("- {}", plain(i))));
                }
            }
            for key in ["summary", "comment", "notes"] {
                if let Some(t) = f[key].as_str().filter(|t| !t.trim().is_empty()) {
                    detail.push(t.to_owned());
                }
            }
            (
                format!("review of handshake {id} complete: {verdict}{control}"),
                (!detail.is_empty()).then(|| detail.join("\n")),
            )
        }
        "control_received" => (
            format!("took control back (handshake {id})"),
            block(&p["nextAction"]),
        ),
        "cancel" => (
            format!(
                "handshake {id} cancelled{}",
                colon(&[s(p, "reason"), s(p, "summary")].join(" "))
            ),
            None,
        ),
        other => (format!("handshake {id} {}", other.replace('_', " ")), None),
    }
}

/// `[3, 5]` as "#3, #5".
fn id_list(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|i| format!("#{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}
