//! Settings from flags and environment variables (`collab-hub --help` lists them all).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::store::DbTarget;

#[derive(Debug, Parser)]
#[command(
    name = "collab-hub",
    version,
    about = "Coordination hub for several AI coding agents working on one codebase",
    long_about = "Coordination hub for several AI coding agents working on one codebase.\n\
                  Agents connect over MCP; people watch over HTTP. Without a subcommand it serves."
)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Run the hub (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Ask the running hub for a fresh bearer token for a participant (its old token stops
    /// working), to put in an MCP client's configuration.
    Token {
        /// Session id.
        #[arg(long)]
        session: String,
        /// Participant id, e.g. claude.
        #[arg(long)]
        participant: String,
        /// The hub to ask [default: http://<--bind>].
        #[arg(long)]
        hub_url: Option<String>,
    },
}

#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Address to listen on. Beyond loopback, --operator-token is required and every request
    /// needs a bearer token.
    #[arg(
        long,
        env = "COLLAB_HUB_BIND",
        default_value = "127.0.0.1:9700",
        global = true
    )]
    pub bind: String,

    /// Database: sqlite:///abs/path, sqlite://rel/path, a file path, or postgres://…
    /// [default: sqlite in --data-dir]
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,

    /// Directory for the embedded SQLite database (hub.db) and other local data.
    #[arg(
        long,
        env = "COLLAB_HUB_DATA_DIR",
        default_value = ".collab-hub",
        global = true
    )]
    pub data_dir: PathBuf,

    /// Operator token: creates and lists sessions when the hub listens beyond loopback.
    #[arg(
        long,
        env = "COLLAB_HUB_OPERATOR_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub operator_token: Option<String>,

    /// Largest accepted request body in bytes.
    #[arg(long, env = "COLLAB_HUB_MAX_BODY_BYTES", default_value_t = 1024 * 1024, global = true)]
    pub max_body_bytes: usize,

    /// Seconds a request body may take to arrive once its headers are in (408 beyond).
    #[arg(
        long,
        env = "COLLAB_HUB_BODY_TIMEOUT_SECS",
        default_value_t = 10,
        global = true
    )]
    pub body_timeout_secs: u64,

    /// Extra host names clients may address the hub by (Host/Origin checks against DNS
    /// rebinding); loopback names are always allowed. Comma-separated.
    #[arg(
        long,
        env = "COLLAB_HUB_ALLOWED_HOSTS",
        value_delimiter = ',',
        global = true
    )]
    pub allowed_hosts: Vec<String>,

    /// End MCP event streams after this many seconds with a reconnect hint (SSE polling; clients
    /// resume with Last-Event-ID). 0 keeps them open. Helps behind proxies that cut long
    /// responses.
    #[arg(
        long,
        env = "COLLAB_HUB_STREAM_MAX_SECS",
        default_value_t = 0,
        global = true
    )]
    pub stream_max_secs: u64,

    /// HTTP worker threads [default: number of cores].
    #[arg(long, env = "COLLAB_HUB_WORKERS", global = true)]
    pub workers: Option<usize>,

    /// Messages one participant may send per second, sustained.
    #[arg(
        long,
        env = "COLLAB_HUB_MESSAGE_RATE",
        default_value_t = 5.0,
        global = true
    )]
    pub message_rate: f64,

    /// Messages one participant may send in a burst before the rate applies.
    #[arg(
        long,
        env = "COLLAB_HUB_MESSAGE_BURST",
        default_value_t = 30,
        global = true
    )]
    pub message_burst: u32,

    /// Seconds a participant may be gone (no open event stream, no request) before the hub
    /// releases its locks.
    #[arg(
        long,
        env = "COLLAB_HUB_DISCONNECT_GRACE_SECS",
        default_value_t = 120,
        global = true
    )]
    pub disconnect_grace_secs: u64,

    /// Two participants' changes to overlapping lines (or the same symbol) of one file within
    /// this many seconds raise a conflict alert.
    #[arg(
        long,
        env = "COLLAB_HUB_CONFLICT_WINDOW_SECS",
        default_value_t = 600,
        global = true
    )]
    pub conflict_window_secs: u64,
}

impl Settings {
    /// Settings for tests and embedding: loopback on an OS-chosen port, everything else default.
    pub fn for_database(database_url: impl Into<String>) -> Settings {
        Settings {
            bind: "127.0.0.1:0".into(),
            database_url: Some(database_url.into()),
            data_dir: PathBuf::from(".collab-hub"),
            operator_token: None,
            max_body_bytes: 1024 * 1024,
            body_timeout_secs: 10,
            allowed_hosts: Vec::new(),
            stream_max_secs: 0,
            workers: Some(2),
            message_rate: 5.0,
            message_burst: 30,
            disconnect_grace_secs: 120,
            conflict_window_secs: 600,
        }
    }

    /// Where the data lives: `--database-url`, else `hub.db` in the data directory.
    pub fn db_target(&self) -> Result<DbTarget, String> {
        match &self.database_url {
            Some(url) => DbTarget::parse(url),
            None => Ok(DbTarget::Sqlite(self.data_dir.join("hub.db"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_subcommands() {
        let cli = Cli::try_parse_from(["collab-hub"]).unwrap();
        assert_eq!(cli.command, None);
        assert_eq!(cli.settings.bind, "127.0.0.1:9700");
        assert_eq!(
            cli.settings.db_target().unwrap(),
            DbTarget::Sqlite(PathBuf::from(".collab-hub/hub.db"))
        );
        let cli = Cli::try_parse_from(["collab-hub", "migrate", "--database-url", "x.db"]).unwrap();
        assert_eq!(cli.command, Some(Command::Migrate));
        assert_eq!(
            cli.settings.db_target().unwrap(),
            DbTarget::Sqlite("x.db".into())
        );
    }
}
