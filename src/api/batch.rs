//! `batch` / `POST /mcp/batch`: several writes of one participant, in order, in one round trip,
//! committed together or not at all. Each operation is `{op, args}` with the args of the tool
//! of that name; a batch holds context writes (set, append, delete, sync, memory push/clear,
//! discovery_report, status_report), messages (message_send), task writes (task create,
//! update, assign, handoff, claim; a task completed releases its locks in the same
//! transaction) and lock acquisitions (lock acquire, without waiting: a batch takes a free lock
//! or fails). Each is checked against the state the ones before it left, so a later one may
//! build on an earlier one; the first that fails fails the batch, naming it
//! (`operations[2].path`), and nothing is written (a lock it reserved is given back).
//!
//! Not batched: lock renew/release, recorded changes, suggestions and handshake steps. Each is
//! a decision of its own (a release grants waiters, a handshake step moves control) and its
//! tool answers in one round trip already.

use futures::future::LocalBoxFuture;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::context::AsContextWrite;
use super::{Call, Operation, parse};
use crate::actors::messages::{BatchRequest, BatchResult, WriteBatch};
use crate::error::HubError;

/// Most operations in one batch.
pub const MAX_OPERATIONS: usize = 100;

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BatchOp {
    ContextSet,
    ContextAppend,
    ContextDelete,
    ContextSync,
    Memory,
    DiscoveryReport,
    StatusReport,
    MessageSend,
    Task,
    Lock,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BatchItem {
    pub op: BatchOp,
    /// That tool's arguments.
    pub args: serde_json::Map<String, Value>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Batch {
    #[schemars(skip)]
    pub session_id: Option<Uuid>,
    #[schemars(skip)]
    pub ai_id: Option<String>,
    pub operations: Vec<BatchItem>,
}

#[derive(Debug, Serialize)]
pub struct BatchResults {
    /// One result per operation, in order.
    pub results: Vec<BatchResult>,
}

/// A request with the session (`sessionId`) and participant (`aiId`) it names, if any.
type Named = (Option<Uuid>, Option<String>, BatchRequest);

impl BatchItem {
    fn request(self) -> Result<Named, HubError> {
        let args = Value::Object(self.args);
        let context = |(s, a, r)| (s, a, BatchRequest::Context(r));
        Ok(match self.op {
            BatchOp::ContextSet => context(parse::<super::context::Set>(args)?.into_write()?),
            BatchOp::ContextAppend => context(parse::<super::context::Append>(args)?.into_write()?),
            BatchOp::ContextDelete => context(parse::<super::context::Delete>(args)?.into_write()?),
            BatchOp::ContextSync => context(parse::<super::context::Sync>(args)?.into_write()?),
            BatchOp::Memory => context(parse::<super::notes::Memory>(args)?.into_write()?),
            BatchOp::DiscoveryReport => {
                context(parse::<super::notes::Discovery>(args)?.into_write()?)
            }
            BatchOp::StatusReport => {
                context(parse::<super::messaging::Report>(args)?.into_write()?)
            }
            BatchOp::MessageSend => {
                let (s, a, spec) = parse::<super::messaging::Send>(args)?.into_spec();
                (s, a, BatchRequest::Message(spec))
            }
            BatchOp::Task => {
                let (s, a, op) = parse::<super::tasks::TaskArgs>(args)?.into_batch()?;
                (s, a, BatchRequest::Task(op))
            }
            BatchOp::Lock => {
                let (s, a, ask) = parse::<super::locks::LockArgs>(args)?.into_batch()?;
                (s, a, BatchRequest::Lock(ask))
            }
        })
    }
}

impl Operation for Batch {
    type Output = BatchResults;

    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<BatchResults, HubError>> {
        Box::pin(async move {
            if self.operations.is_empty() || self.operations.len() > MAX_OPERATIONS {
                return Err(HubError::invalid(
                    "operations",
                    format!("1 to {MAX_OPERATIONS} operations"),
                ));
            }
            let mut requests = Vec::with_capacity(self.operations.len());
            for (i, item) in self.operations.into_iter().enumerate() {
                let (session, ai_id, request) = item.request().map_err(|e| e.in_operation(i))?;
                // One session and one participant for the whole batch.
                if session.is_some_and(|s| Some(s) != self.session_id) {
                    return Err(HubError::invalid(
                        "sessionId",
                        "a batch acts in one session: give sessionId once, on the batch",
                    )
                    .in_operation(i));
                }
                if ai_id.is_some() && ai_id != self.ai_id {
                    return Err(HubError::invalid(
                        "aiId",
                        "a batch acts for one participant: give aiId once, on the batch",
                    )
                    .in_operation(i));
                }
                requests.push(request);
            }
            let session_id = call.session(self.session_id).await?;
            let command = WriteBatch {
                credential: call.credential.clone(),
                as_participant: self.ai_id,
                requests,
            };
            let results = call.send(session_id, command).await?;
            Ok(BatchResults { results })
        })
    }
}
