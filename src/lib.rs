//! collab-hub: a real-time coordination hub for several AI coding agents on one codebase.
//!
//! The crate is laid out as DESIGN.md describes: `domain` (pure rules), `store` (the only code
//! that touches the database), `actors` (where state lives), `http` (transports), `app`
//! (wiring, used by `main` and the tests).

pub mod actors;
pub mod api;
pub mod app;
pub mod cli;
pub mod client;
pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod mcp;
pub mod store;
pub mod ws;

pub use app::Application;
pub use config::Settings;
pub use error::HubError;
