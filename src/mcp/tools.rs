//! The tool catalogue: one table, name → input type → actor message → output. Every tool is a
//! thin adapter; the REST surface sends the same actor messages.
//!
//! Descriptions are short on purpose: every connected model pays for them in tokens.

mod identity;
mod schema;

use identity::{
    AckArgs, PollArgs, events_ack, events_poll, session_create, session_join, session_leave, whoami,
};
use schema::schema;

use std::sync::OnceLock;

use actix::Addr;
use futures::future::LocalBoxFuture;
use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::dispatch::Notifier;
use super::registry::{Binding, McpRegistry, McpSession};
use crate::actors::Hub;
use crate::actors::messages::ToSession;
use crate::api::{self, Call, Seat};
use crate::domain::auth::Credential;
use crate::domain::role::Role;
use crate::error::HubError;

/// Everything a tool call may use.
pub struct ToolCtx {
    pub hub: Addr<Hub>,
    pub registry: Addr<McpRegistry>,
    pub mcp_id: String,
    pub session: McpSession,
    /// Progress and log notifications for this call (when it is answered as SSE).
    pub notify: Option<Notifier>,
    /// The caller's unacknowledged critical events, when the call's command brought them back.
    pub critical: crate::api::CriticalSlot,
    /// The request's key (`api::REQUEST_KEY`), for the tool's command.
    pub request_key: Option<crate::api::RequestKey>,
}

/// What a tool produced: its structured output, and a new identity for the MCP session if the
/// tool created or joined a session.
pub struct ToolOutput {
    pub value: Value,
    pub bind: Option<(Credential, Binding)>,
}

type ToolFn = fn(ToolCtx, Value) -> LocalBoxFuture<'static, Result<ToolOutput, HubError>>;

/// Who is asking for the tool list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Not bound to a participant yet: may create, join, list.
    Unbound,
    Participant(Role),
}

pub struct ToolSpec {
    pub name: &'static str,
    /// The tool gives the MCP session an identity (only where there is a session to keep it).
    pub binds: bool,
    pub description: &'static str,
    input: fn() -> Value,
    pub read_only: bool,
    /// A grouped tool's actions that only read (`list`, `get`…): what a read-only viewer may
    /// call on a WebSocket.
    pub read_actions: &'static [&'static str],
    pub destructive: bool,
    pub idempotent: bool,
    visible: fn(Audience) -> bool,
    pub call: Run,
}

/// How a tool runs.
pub enum Run {
    /// A generic adapter over an `api` operation: the same on MCP, REST and WebSocket.
    Op(api::OpFn),
    /// Behaviour that belongs to MCP itself (binding this MCP session to an identity, its
    /// event cursor).
    Mcp(ToolFn),
}

impl ToolSpec {
    /// Does this call only read? (`args` are the call's arguments.)
    pub fn reads(&self, args: &Value) -> bool {
        self.read_only
            || args["action"]
                .as_str()
                .is_some_and(|a| self.read_actions.contains(&a))
    }

    pub fn visible_to(&self, audience: Audience) -> bool {
        (self.visible)(audience)
    }

    /// The tool as `tools/list` shows it. Every connected model pays for these bytes, so: no
    /// output schemas (results are self-describing JSON, sent as `structuredContent` and as
    /// text), and no annotations that equal the spec's defaults (readOnly false, destructive
    /// true, idempotent false, openWorld true).
    pub fn describe(&self) -> Value {
        let mut hints = Map::new();
        hints.insert("openWorldHint".into(), json!(false));
        if self.read_only {
            hints.insert("readOnlyHint".into(), json!(true));
        } else {
            // Only meaningful for tools that change something.
            if !self.destructive {
                hints.insert("destructiveHint".into(), json!(false));
            }
            if self.idempotent {
                hints.insert("idempotentHint".into(), json!(true));
            }
        }
        json!({
            "name": self.name,
            "description": self.description,
            "inputSchema": (self.input)(),
            "annotations": hints,
        })
    }
}

fn unbound(a: Audience) -> bool {
    a == Audience::Unbound
}
fn participant(a: Audience) -> bool {
    matches!(a, Audience::Participant(_))
}
fn steering(a: Audience) -> bool {
    matches!(a, Audience::Participant(r) if r != Role::Observer)
}

pub static CATALOGUE: &[ToolSpec] = &[
    ToolSpec {
        name: "session_create",
        binds: true,
        description: "Create a collaboration session and act in it as `me`.",
        input: schema::<api::sessions::Create>,
        read_only: false,
        read_actions: &[],
        destructive: false,
        idempotent: false,
        visible: unbound,
        call: Run::Mcp(|ctx, args| Box::pin(session_create(ctx, args))),
    },
    ToolSpec {
        name: "session_join",
        binds: true,
        description: "Join a session as a new participant and act as it.",
        input: schema::<api::sessions::Join>,
        read_only: false,
        read_actions: &[],
        destructive: false,
        idempotent: false,
        visible: unbound,
        call: Run::Mcp(|ctx, args| Box::pin(session_join(ctx, args))),
    },
    ToolSpec {
        name: "session_list",
        binds: false,
        description: "List sessions, most recently active first.",
        input: schema::<api::sessions::List>,
        read_only: true,
        read_actions: &[],
        destructive: false,
        idempotent: true,
        visible: unbound,
        call: Run::Op(api::run_json::<api::sessions::List>),
    },
    ToolSpec {
        name: "evolution",
        binds: false,
        description: "Collaboration genomes: populations per task type (status), gene insights, a session's genome and fitness.",
        input: schema::<api::evolution::EvolutionArgs>,
        read_only: true,
        read_actions: &[],
        destructive: false,
        idempotent: true,
        visible: unbound,
        call: Run::Op(api::run_json::<api::evolution::EvolutionArgs>),
    },
    ToolSpec {
        name: "whoami",
        binds: false,
        description: "Your session, role, permissions, driver and event cursor.",
        input: schema::<NoArgs>,
        read_only: true,
        read_actions: &[],
        destructive: false,
        idempotent: true,
        visible: participant,
        call: Run::Mcp(|ctx, args| Box::pin(whoami(ctx, args))),
    },
    ToolSpec {
        name: "events_poll",
        binds: false,
        description: "Session events after your cursor (or `after`), oldest first.",
        input: schema::<PollArgs>,
        read_only: true,
        read_actions: &[],
        destructive: false,
        idempotent: true,
        visible: participant,
        call: Run::Mcp(|ctx, args| Box::pin(events_poll(ctx, args))),
    },
    ToolSpec {
        name: "events_ack",
        binds: false,
        description: "Acknowledge events up to `upTo`; they stop being flagged.",
        input: schema::<AckArgs>,
        read_only: false,
        read_actions: &[],
        destructive: false,
        idempotent: true,
        visible: participant,
        call: Run::Mcp(|ctx, args| Box::pin(events_ack(ctx, args))),
    },
    ToolSpec {
        name: "session_status",
        binds: false,
        description: "Pause, resume or complete the session.",
        input: schema::<api::sessions::SetStatus>,
        read_only: false,
        read_actions: &[],
        destructive: false,
        idempotent: false,
        visible: steering,
        call: Run::Op(api::run_json::<api::sessions::SetStatus>),
    },
    ToolSpec {
        name: "session",
        binds: false,
        description: "resume: your briefing after a break (others' work, alerts, next steps); save: snapshot; export: the session's record.",
        input: schema::<api::over_time::SessionArgs>,
        read_only: false,
        read_actions: &["resume", "export"],
        destructive: false,
        idempotent: false,
        visible: participant,
        call: Run::Op(api::run_json::<api::over_time::SessionArgs>),
    },
    ToolSpec {
        name: "session_leave",
        binds: false,
        description: "Leave the session; your identity here ends.",
        input: schema::<api::sessions::Leave>,
        read_only: false,
        read_actions: &[],
        destructive: true,
        idempotent: false,
        visible: participant,
        call: Run::Mcp(|ctx, args| Box::pin(session_leave(ctx, args))),
    },
    ToolSpec {
        name: "context_get",
        binds: false,
        description: "Read the shared context at a dotted path (empty: all), with its version.",
        input: schema::<api::context::Get>,
        read_only: true,
        read_actions: &[],
        destructive: false,
        idempotent: true,
        visible: participant,
        call: Run::Op(api::run_json::<api::context::Get>),
    },
    ToolSpec {
        name: "context_set",
        binds: false,
        description: "Set a value at a dotted path; expectedVersion makes it compare-and-set.",
        input: schema::<api::context::Set>,
        read_only: false,
        read_actions: &[],
        destructive: false,
        idempotent: true,
        visible: steering,
        call: Run::Op(api::run_json::<api::context::Set>),
    },
    ToolSpec {
        name: "context_append",
        binds: false,
        description: "Append a value to the array at a dotted path (created if absent).",
        input: schema::<api::context::Append>,
        read_only: false,
        read_actions: &[],
        destructive: false,
        idempotent: false,
        visible: steering,
        call: Run::Op(api::run_json::<api::context::Append>),
    },
    ToolSpec {
        name: "context_delete",
        binds: false,
        description: "Delete the value at a dotted path.",
        input: schema::<api::context::Delete>,
        read_only: false,
        read_actions: &[],
        destructive: true,
        idempotent: false,
        visible: steering,
        call: Run::Op(api::run_json::<api::context::Delete>),
    },
    ToolSpec {
        name: "context_sync",
        binds: false,
        description: "Deep-merge an object of updates into the shared context.",
        input: schema::<api::context::Sync>,
        read_only: false,
        read_actions: &[],
        destructive: false,
        idempotent: true,
        visible: steering,
        call: Run::Op(api::run_json::<api::context::Sync>),
    },
    ToolSpec {
        name: "batch",
        binds: false,
        description: "Several writes [{op: tool name, args}] (context, message_send, task, lock acquire) in order, all or none.",
        input: schema::<api::batch::Batch>,
        read_only: false,
        read_actions: &[],
        destructive: false,
        idempotent: false,
        visible: steering,
        call: Run::Op(api::run_json::<api::batch::Batch>),
    },
    ToolSpec {
        name: "context_diff",
        binds: false,
        description: "What changed in the context since an event id (default: your last write).",
        input: schema::<api::context::DiffSince>,
        read_only: true,
        read_actions: &[],
        destructive: false,
        idempotent: true,
        visible: participant,
        call: Run::Op(api::run_json::<api::context::DiffSince>),
    },
    ToolSpec {
        name: "memory",
        binds: false,
        description: "Working memory (symbols, files, breakpoints): push, recent, or clear.",
        input: schema::<api::notes::Memory>,
        read_only: false,
        read_actions: &["recent"],
        destructive: false,
        idempotent: false,
        visible: participant,
        call: Run::Op(api::run_json::<api::notes::Memory>),
    },
    ToolSpec {
        name: "notes",
        binds: false,
        description: "Per-AI notes: set your observations/preferences, or read anyone's.",
        input: schema::<api::notes::Notes>,
        read_only: false,
        read_actions: &[],
        destructive: false,
        idempotent: true,
        visible: participant,
        call: Run::Op(api::run_json::<api::notes::Notes>),
    },
    ToolSpec {
        name: "discovery_report",
        binds: false,
        description: "Share a finding with everyone; high and critical ones are announced.",
        input: schema::<api::notes::Discovery>,
        read_only: false,
        read_actions: &[],
        destructive: false,
        idempotent: false,
        visible: participant,
        call: Run::Op(api::run_json::<api::notes::Discovery>),
    },
    ToolSpec {
        name: "message_send",
        binds: false,
        description: "Message one participant (`to`) or everyone; critical ones interrupt.",
        input: schema::<api::messaging::Send>,
        read_only: false,
        read_actions: &[],
        destructive: false,
        idempotent: false,
        visible: participant,
        call: Run::Op(api::run_json::<api::messaging::Send>),
    },
    ToolSpec {
        name: "messages_read",
        binds: false,
        description: "Messages you can see, with unread count; marks yours read.",
        input: schema::<api::messaging::Read>,
        read_only: false,
        read_actions: &[],
        destructive: false,
        idempotent: true,
        visible: participant,
        call: Run::Op(api::run_json::<api::messaging::Read>),
    },
    ToolSpec {
        name: "message_ack",
        binds: false,
        description: "Acknowledge messages by ids or upTo an id.",
        input: schema::<api::messaging::Ack>,
        read_only: false,
        read_actions: &[],
        destructive: false,
        idempotent: true,
        visible: participant,
        call: Run::Op(api::run_json::<api::messaging::Ack>),
    },
    ToolSpec {
        name: "checkpoint",
        binds: false,
        description: "Begin/end a focus period; non-critical events wait unless interruptible.",
        input: schema::<api::messaging::Checkpoint>,
        read_only: false,
        read_actions: &[],
        destructive: false,
        idempotent: false,
        visible: participant,
        call: Run::Op(api::run_json::<api::messaging::Checkpoint>),
    },
    ToolSpec {
        name: "status_report",
        binds: false,
        description: "Report a test/build/merge/lint result; failures alert everyone.",
        input: schema::<api::messaging::Report>,
        read_only: false,
        read_actions: &[],
        destructive: false,
        idempotent: false,
        visible: participant,
        call: Run::Op(api::run_json::<api::messaging::Report>),
    },
    ToolSpec {
        name: "handshake",
        binds: false,
        description: "Turns: work_complete (driver), review_start {acknowledgeId}, review_complete {feedback, passControl}, control_received, cancel.",
        input: schema::<api::coordination::HandshakeArgs>,
        read_only: false,
        read_actions: &[],
        destructive: false,
        idempotent: false,
        visible: steering,
        call: Run::Op(api::run_json::<api::coordination::HandshakeArgs>),
    },
    ToolSpec {
        name: "role",
        binds: false,
        description: "Roles: request one; the driver responds {requestId, grant} or assigns {roles}.",
        input: schema::<api::coordination::RoleArgs>,
        read_only: false,
        read_actions: &[],
        destructive: false,
        idempotent: false,
        visible: participant,
        call: Run::Op(api::run_json::<api::coordination::RoleArgs>),
    },
    ToolSpec {
        name: "changes",
        binds: false,
        description: "Change ledger: record a file change, or list changes (by file, ai, since).",
        input: schema::<api::coordination::ChangesArgs>,
        read_only: false,
        read_actions: &["list"],
        destructive: false,
        idempotent: false,
        visible: participant,
        call: Run::Op(api::run_json::<api::coordination::ChangesArgs>),
    },
    ToolSpec {
        name: "lock",
        binds: false,
        description: "Leases on files/dirs/globs: acquire (wait to queue), renew, release, list. Cite the token in changes.",
        input: schema::<api::locks::LockArgs>,
        read_only: false,
        read_actions: &["list"],
        destructive: false,
        idempotent: false,
        visible: participant,
        call: Run::Op(api::run_json::<api::locks::LockArgs>),
    },
    ToolSpec {
        name: "suggestion",
        binds: false,
        description: "Propose a change (submit) for the driver to accept or reject (resolve); list pending.",
        input: schema::<api::suggestions::SuggestionArgs>,
        read_only: false,
        read_actions: &["list"],
        destructive: false,
        idempotent: false,
        visible: participant,
        call: Run::Op(api::run_json::<api::suggestions::SuggestionArgs>),
    },
    ToolSpec {
        name: "dispute",
        binds: false,
        description: "Dispute a review/suggestion/change: raise, resolve or vote (per the session's conflictResolution), list.",
        input: schema::<api::disputes::DisputeArgs>,
        read_only: false,
        read_actions: &["list"],
        destructive: false,
        idempotent: false,
        visible: participant,
        call: Run::Op(api::run_json::<api::disputes::DisputeArgs>),
    },
    ToolSpec {
        name: "task",
        binds: false,
        description: "Tasks with subtasks and dependencies: create, update status, assign, handoff, claim, list, get.",
        input: schema::<api::tasks::TaskArgs>,
        read_only: false,
        read_actions: &["list", "get"],
        destructive: false,
        idempotent: false,
        visible: participant,
        call: Run::Op(api::run_json::<api::tasks::TaskArgs>),
    },
];

pub fn find(name: &str) -> Option<&'static ToolSpec> {
    CATALOGUE.iter().find(|t| t.name == name)
}

/// The `tools/list` entries for `audience`; stateless (2026-07-28) callers without an identity
/// do not see the tools that would bind one.
pub fn listed(audience: Audience, stateless: bool) -> Vec<Value> {
    let all = listed_for(audience);
    if stateless && audience == Audience::Unbound {
        let binding: Vec<&str> = CATALOGUE
            .iter()
            .filter(|t| t.binds)
            .map(|t| t.name)
            .collect();
        all.iter()
            .filter(|t| !binding.contains(&t["name"].as_str().unwrap_or("")))
            .cloned()
            .collect()
    } else {
        all.to_vec()
    }
}

/// The `tools/list` entries for `audience`, built once per audience.
fn listed_for(audience: Audience) -> &'static [Value] {
    static UNBOUND: OnceLock<Vec<Value>> = OnceLock::new();
    static ROLES: OnceLock<[Vec<Value>; 3]> = OnceLock::new();
    let build = |a: Audience| -> Vec<Value> {
        CATALOGUE
            .iter()
            .filter(|t| t.visible_to(a))
            .map(ToolSpec::describe)
            .collect()
    };
    match audience {
        Audience::Unbound => UNBOUND.get_or_init(|| build(Audience::Unbound)),
        Audience::Participant(role) => {
            let all = ROLES.get_or_init(|| Role::ALL.map(|r| build(Audience::Participant(r))));
            &all[Role::ALL.iter().position(|r| *r == role).unwrap_or(2)]
        }
    }
}

/// Tool arguments: a missing `arguments` is an empty object; errors name the field.
pub fn args<T: DeserializeOwned>(value: Value) -> Result<T, HubError> {
    let value = if value.is_null() { json!({}) } else { value };
    api::parse(value)
}

pub(super) fn value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

pub(super) fn plain(value: Value) -> ToolOutput {
    ToolOutput { value, bind: None }
}

/// Sends `command` to the caller's own session.
pub(super) async fn in_session<M, R>(ctx: &ToolCtx, command: M) -> Result<R, HubError>
where
    M: actix::Message<Result = Result<R, HubError>> + Send + 'static,
    R: Send + 'static,
    crate::actors::session::SessionActor: actix::Handler<M>,
{
    let session_id = bound(ctx)?.session_id;
    ctx.hub
        .send(ToSession {
            session_id,
            command,
        })
        .await?
}

/// The bound participant, or a message telling the model how to get one.
pub(super) fn bound(ctx: &ToolCtx) -> Result<&Binding, HubError> {
    ctx.session.binding.as_ref().ok_or_else(|| {
        HubError::Forbidden(
            "this MCP session acts as nobody yet: call session_join or session_create, or connect with Authorization: Bearer <token>"
                .into(),
        )
    })
}

pub(super) fn not_bound(ctx: &ToolCtx) -> Result<(), HubError> {
    if ctx.session.stateless {
        return Err(HubError::Forbidden(
            "2026-07-28 requests are stateless and cannot take on an identity: send Authorization: Bearer <token> (from POST /mcp/session/join or the session's creator)".into(),
        ));
    }
    match &ctx.session.binding {
        Some(b) => Err(HubError::Conflict {
            code: "already_bound",
            message: format!(
                "this MCP session already acts as {:?}; open another MCP session to act as someone else",
                b.ai_id
            ),
        }),
        None => Ok(()),
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NoArgs {}

impl ToolSpec {
    /// Runs the tool as this MCP session's identity.
    pub async fn run(&self, ctx: ToolCtx, raw: Value) -> Result<ToolOutput, HubError> {
        match self.call {
            Run::Op(run) => {
                let call = call_of(&ctx);
                Ok(plain(run(call, raw).await?))
            }
            Run::Mcp(run) => run(ctx, raw).await,
        }
    }
}

/// The caller as the operations see it: this MCP session's credential and binding.
pub fn call_of(ctx: &ToolCtx) -> Call {
    Call {
        hub: ctx.hub.clone(),
        credential: ctx.session.credential.clone(),
        seat: ctx.session.binding.as_ref().map(|b| Seat {
            session_id: b.session_id,
            ai_id: b.ai_id.clone(),
        }),
        critical: Some(ctx.critical.clone()),
        request_key: std::rc::Rc::new(std::cell::Cell::new(ctx.request_key)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_is_described_with_object_schemas() {
        let mut names = std::collections::HashSet::new();
        for t in CATALOGUE {
            assert!(names.insert(t.name), "duplicate tool {}", t.name);
            let d = t.describe();
            assert_eq!(d["inputSchema"]["type"], "object", "{}", t.name);
            assert!(
                d.get("outputSchema").is_none(),
                "{}: no output schemas",
                t.name
            );
            assert!(
                !t.description.is_empty() && t.description.len() < 140,
                "{}",
                t.name
            );
            assert!(d["inputSchema"].get("$schema").is_none());
            let text = d["inputSchema"].to_string();
            assert!(!text.contains("$ref") && !text.contains("null"), "{text}");
            for (name, prop) in d["inputSchema"]["properties"]
                .as_object()
                .into_iter()
                .flatten()
            {
                assert!(
                    prop.is_object(),
                    "{}: property {name} schema is not an object",
                    t.name
                );
            }
        }
    }

    /// What any one client is shown stays within the token budget the README states (16 KB
    /// for the largest audience, the driver); the whole catalogue is printed for reference.
    #[test]
    fn catalogue_fits_its_budget() {
        let all: Vec<Value> = CATALOGUE.iter().map(ToolSpec::describe).collect();
        let bytes = json!({ "tools": all }).to_string().len();
        println!("all tools together: {bytes} bytes");
        for t in &all {
            println!("  {}: {} bytes", t["name"], t.to_string().len());
        }
        // What each audience pays (README quotes these; `--nocapture` shows them).
        for a in [
            Audience::Unbound,
            Audience::Participant(Role::Driver),
            Audience::Participant(Role::Navigator),
            Audience::Participant(Role::Observer),
        ] {
            for stateless in [false, true] {
                let size = json!({ "tools": listed(a, stateless) }).to_string().len();
                println!("tools/list for {a:?} (stateless {stateless}): {size} bytes");
                assert!(size < 16 * 1024, "{a:?} is shown {size} bytes");
            }
        }
    }

    #[test]
    fn observers_do_not_see_steering_tools() {
        let names = |a, stateless| -> Vec<String> {
            listed(a, stateless)
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_owned())
                .collect()
        };
        let has = |a, n: &str| names(a, false).iter().any(|x| x == n);
        assert!(has(Audience::Participant(Role::Driver), "session_status"));
        assert!(!has(
            Audience::Participant(Role::Observer),
            "session_status"
        ));
        assert!(has(Audience::Unbound, "session_join"));
        assert!(!has(Audience::Participant(Role::Driver), "session_join"));
        assert_eq!(
            names(Audience::Unbound, true),
            ["session_list", "evolution"]
        );
    }
}
