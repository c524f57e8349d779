//! `lock` / `/mcp/collaborate/lock*`: leases on files, directories, globs and symbols.

use futures::future::LocalBoxFuture;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::coordination::json as reply_json;
use super::{Call, Operation as Op};
use crate::actors::messages::{AcquireLock, ListLocks, ReleaseLock, RenewLock};
use crate::domain::auth::Credential;
use crate::domain::lock::Mode;
use crate::error::HubError;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum LockAction {
    Acquire,
    Renew,
    Release,
    List,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LockArgs {
    #[schemars(skip)]
    session_id: Option<Uuid>,
    #[schemars(skip)]
    #[serde(alias = "ai")]
    ai_id: Option<String>,
    action: LockAction,
    /// acquire: /file, /dir/, /glob/*, optionally #Symbol.
    resource: Option<String>,
    operation: Option<String>,
    /// "30s", "5m", seconds; default 300.
    duration: Option<Value>,
    /// Default exclusive.
    mode: Option<Mode>,
    /// acquire: queue if taken.
    wait: Option<bool>,
    /// acquire: released when this task completes.
    task_id: Option<i64>,
    /// renew, release (also cancels a queued request).
    lock_id: Option<i64>,
    /// release: someone else's (driver).
    force: Option<bool>,
}

/// What `lock` asks for (shared with REST).
pub enum LockCommand {
    Acquire(AcquireLock),
    Renew(RenewLock),
    Release(ReleaseLock),
    List(ListLocks),
}

impl LockArgs {
    /// A lock taken in a batch, with the session and participant it names. A batch decides at
    /// once: it takes a free lock or fails, it does not queue.
    pub fn into_batch(
        self,
    ) -> Result<
        (
            Option<Uuid>,
            Option<String>,
            crate::domain::lock_rules::LockAsk,
        ),
        HubError,
    > {
        let (session, ai_id) = (self.session_id, self.ai_id.clone());
        if self.wait == Some(true) {
            return Err(HubError::invalid(
                "wait",
                "a batch does not queue: take a free lock, or use the lock tool to wait",
            ));
        }
        match self.into_command(Credential::None, None)? {
            LockCommand::Acquire(a) => Ok((
                session,
                ai_id,
                crate::domain::lock_rules::LockAsk {
                    resource: a.resource,
                    operation: a.operation,
                    duration: a.duration,
                    mode: a.mode,
                    wait: false,
                    task_id: a.task_id,
                },
            )),
            _ => Err(HubError::invalid(
                "action",
                "a batch takes locks (acquire); renew, release and list them with the lock tool",
            )),
        }
    }

    pub fn into_command(
        self,
        credential: Credential,
        as_participant: Option<String>,
    ) -> Result<LockCommand, HubError> {
        let lock_id = |id: Option<i64>| {
            id.ok_or_else(|| HubError::invalid("lockId", "name the lock (lockId)"))
        };
        Ok(match self.action {
            LockAction::Acquire => LockCommand::Acquire(AcquireLock {
                credential,
                as_participant,
                resource: self
                    .resource
                    .ok_or_else(|| HubError::invalid("resource", "acquire names the resource"))?,
                operation: self.operation,
                duration: self.duration,
                mode: self.mode.unwrap_or_default(),
                wait: self.wait.unwrap_or(false),
                task_id: self.task_id,
            }),
            LockAction::Renew => LockCommand::Renew(RenewLock {
                credential,
                as_participant,
                lock_id: lock_id(self.lock_id)?,
                duration: self.duration,
            }),
            LockAction::Release => LockCommand::Release(ReleaseLock {
                credential,
                as_participant,
                lock_id: lock_id(self.lock_id)?,
                force: self.force.unwrap_or(false),
            }),
            LockAction::List => LockCommand::List(ListLocks { credential }),
        })
    }
}

impl Op for LockArgs {
    type Output = Value;

    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<Value, HubError>> {
        Box::pin(async move {
            let session = call.session(self.session_id).await?;
            let ai_id = self.ai_id.clone();
            Ok(match self.into_command(call.credential.clone(), ai_id)? {
                LockCommand::Acquire(c) => reply_json(call.send(session, c).await?),
                LockCommand::Renew(c) => reply_json(call.send(session, c).await?),
                LockCommand::Release(c) => reply_json(call.send(session, c).await?),
                LockCommand::List(c) => json!({ "locks": call.send(session, c).await? }),
            })
        })
    }
}
