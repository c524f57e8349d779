//! Where state lives: one actor per concern (DESIGN "Actors").
//!
//! Transports send the typed messages in `messages`; the `Hub` routes session commands to the
//! session's `SessionActor`, which checks them against the domain rules, has the `Store` commit
//! the event and projection, and only then applies the change and fans the event out to the
//! participants' `AgentActor`s.

pub mod agent;
pub mod evolution;
pub mod hub;
pub mod lock_table;
pub mod messages;
pub mod retention;
pub mod session;
pub mod task_coordinator;

pub use hub::Hub;
