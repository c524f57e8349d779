//! The typed commands every transport (MCP, REST, and later WebSocket and the CLI) sends to the
//! actors, and their replies, grouped by feature. A feature exists once: here (and its request
//! type in `api`).

mod context;
mod coordination;
mod disputes;
mod events;
mod evolution;
mod export;
mod hub;
mod lock_table;
mod locks;
mod membership;
mod messaging;
mod over_time;
mod suggestions;
mod tasks;

pub use context::*;
pub use coordination::*;
pub use disputes::*;
pub use events::*;
pub use evolution::*;
pub use export::*;
pub use hub::*;
pub use lock_table::*;
pub use locks::*;
pub use membership::*;
pub use messaging::*;
pub use over_time::*;
pub use suggestions::*;
pub use tasks::*;

/// What the feature modules share.
mod imports {
    pub(super) use std::collections::{BTreeMap, BTreeSet};

    pub(super) use actix::Message;
    pub(super) use serde::Serialize;
    pub(super) use uuid::Uuid;

    pub(super) use crate::domain::auth::Credential;
    pub(super) use crate::domain::context::{ContextRequest, Diff, Path};
    pub(super) use crate::domain::event::Event;
    pub(super) use crate::domain::handshake::{Phase, Step};
    pub(super) use crate::domain::ledger::ChangeSpec;
    pub(super) use crate::domain::ledger::{ChangeQuery, ChangeView, SuggestionView};
    pub(super) use crate::domain::lock::{Lock, Mode};
    pub(super) use crate::domain::message::{AckSelection, MessageSpec};
    pub(super) use crate::domain::message::{MessagePage, MessageQuery};
    pub(super) use crate::domain::role::{Permission, Role};
    pub(super) use crate::domain::session::{
        HandshakeMode, Participant, ParticipantBrief, ParticipantSpec, ParticipantView, Session,
        SessionSpec, SessionStatus, SessionSummary, SessionView,
    };
    pub(super) use crate::domain::task::{Status as TaskStatus, Task};
    pub(super) use crate::domain::task_rules::TaskOp;
    pub(super) use crate::error::HubError;
}
