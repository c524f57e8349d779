//! Commands that set agents up to work with a running hub: `collab-hub connect` writes an agent
//! client's configuration (MCP server entry and hooks), `collab-hub hook` is what those hooks run.

pub mod connect;
pub mod hook;

use std::fmt;

/// The agent clients `connect` and `hook` know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Agent {
    Claude,
    Gemini,
    Cursor,
    Codex,
}

impl fmt::Display for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Agent::Claude => "claude",
            Agent::Gemini => "gemini",
            Agent::Cursor => "cursor",
            Agent::Codex => "codex",
        })
    }
}

/// The hub an agent talks to when nothing says otherwise.
pub const DEFAULT_HUB_URL: &str = "http://127.0.0.1:9700";
