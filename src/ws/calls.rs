//! The `call` frame: any operation the MCP tools offer, by tool name, through the same request
//! types and actor messages (`mcp::tools::CATALOGUE`, `api`). The few tools whose behaviour
//! belongs to MCP (binding an MCP session, its event cursor) map to their plain operations or
//! to this protocol's own frames.

use serde_json::{Value, json};

use uuid::Uuid;

use crate::actors::messages::{AckEvents, Whoami};
use crate::api::{self, Call, OpFn};
use crate::error::HubError;
use crate::mcp::tools::{self, Run};

/// Runs `operation` as `call`'s caller. `viewer`: the connection has no participant identity;
/// it may read (read-only tools, read actions, and `messages_read` as the operator), and take a
/// seat (create or join), nothing else.
pub async fn run(
    call: Call,
    operation: &str,
    arguments: Value,
    viewer: bool,
) -> Result<Value, HubError> {
    // The session as REST's `GET /mcp/session/{id}` shows it (MCP clients read theirs with
    // `whoami`): a viewer has no other way to see who drives and where the handshake is.
    if operation == "session_get" {
        return api::run_json::<api::sessions::Get>(call, arguments).await;
    }
    let tool = tools::find(operation).ok_or_else(|| {
        HubError::invalid(
            "operation",
            format!(
                "unknown operation {operation:?}: the names are the MCP tool names (and session_get)"
            ),
        )
    })?;
    let run: OpFn = match (&tool.call, operation) {
        (Run::Op(run), _) => *run,
        (Run::Mcp(_), "session_create") => api::run_json::<api::sessions::Create>,
        (Run::Mcp(_), "session_join") => api::run_json::<api::sessions::Join>,
        (Run::Mcp(_), "session_leave") => api::run_json::<api::sessions::Leave>,
        (Run::Mcp(_), "whoami") => return whoami(call).await,
        (Run::Mcp(_), _) => {
            return Err(HubError::invalid(
                "operation",
                format!("{operation} is MCP's; on a WebSocket use the subscribe and ack frames"),
            ));
        }
    };
    let takes_seat = matches!(operation, "session_create" | "session_join");
    let operator_read = operation == "messages_read" && reads_as_operator(&arguments);
    if viewer && operation == "messages_read" && !operator_read {
        return Err(HubError::Forbidden(
            "messages_read naming a participant (aiId) reads, and marks read, for that participant: a viewer reads as the operator (leave aiId out), or sends an auth frame with the participant's token".into(),
        ));
    }
    if viewer && !tool.reads(&arguments) && !takes_seat && !operator_read {
        return Err(HubError::Forbidden(format!(
            "{operation} acts for a participant: send an auth frame with its token first (a viewer may read, create or join)"
        )));
    }
    run(call, arguments).await
}

/// `messages_read` marks what it returns read for the participant who reads: it is no read-only
/// tool. A caller without a participant identity reads as the operator (the session actor
/// leaves `MessageQuery::viewer` at `None`): every message with every receipt (`deliveredTo`,
/// `shownTo`, `readBy`, `ackedBy`), marking nothing. Only naming a participant (`aiId`) would
/// read, and mark, for it.
fn reads_as_operator(arguments: &Value) -> bool {
    arguments.get("aiId").is_none_or(Value::is_null)
}

async fn whoami(call: Call) -> Result<Value, HubError> {
    let Ok(seat) = call.identify().await else {
        return Ok(json!({ "viewer": true }));
    };
    let me = call
        .send(
            seat.session_id,
            Whoami {
                credential: call.credential.clone(),
            },
        )
        .await?;
    serde_json::to_value(me).map_err(|e| HubError::Internal(e.to_string()))
}

/// The `ack` frame: moves the caller's event cursor in its session (or `session_id`'s).
pub async fn ack(call: Call, up_to: i64, session_id: Option<Uuid>) -> Result<Value, HubError> {
    let session_id = call.session(session_id).await?;
    let command = AckEvents {
        credential: call.credential.clone(),
        up_to,
    };
    let acked = call.send(session_id, command).await?;
    Ok(json!({ "ackedEventId": acked }))
}
