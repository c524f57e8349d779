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
    /// Export a session from the running hub: a summary, then everything that happened, as
    /// Markdown, JSON (docs/export.schema.json) or one self-contained HTML page. Written to
    /// stdout or --out. Uses --operator-token when set (the operator sees every event).
    Export {
        /// Session id.
        session: String,
        /// markdown, json or html.
        #[arg(long, default_value = "markdown", value_parser = ["markdown", "json", "html"])]
        format: String,
        /// Include the diffs of recorded changes and suggestions.
        #[arg(long)]
        include_code: bool,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The hub to ask [default: http://<--bind>].
        #[arg(long)]
        hub_url: Option<String>,
    },
    /// Run by an agent client at its hook points (session start, prompt, after a tool,
    /// compaction, stop): reads the client's hook input on stdin, asks the hub what waits for
    /// the participant and prints it in the client's documented hook output. Prints nothing and
    /// exits 0 when nothing waits or the hub is down (within a second).
    Hook(crate::cli::hook::HookArgs),
    /// Get a participant's token from the running hub (joining the session if the name is not a
    /// participant yet) and write an agent client's configuration for this repository: the MCP
    /// server entry and the hooks. The token goes only into files kept out of version control.
    Connect(crate::cli::connect::ConnectArgs),
    /// Write whole sessions (all by default) of the database to one portable, self-checking
    /// file (zstd-compressed JSON rows with a SHA-256). Safe while a hub runs.
    Backup {
        /// The file to write (replaced only once the new one is complete).
        file: PathBuf,
        /// Back up only this session (repeat for several).
        #[arg(long)]
        session: Vec<String>,
    },
    /// Restore a backup file into the database (migrating it first), all or nothing. Refuses
    /// while a hub runs on the database.
    Restore {
        /// The backup file to read.
        file: PathBuf,
        /// Replace sessions that already exist (all their rows) instead of refusing.
        #[arg(long)]
        replace: bool,
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

    /// Seconds between WebSocket pings; a connection silent for three of them is closed.
    #[arg(
        long,
        env = "COLLAB_HUB_WS_HEARTBEAT_SECS",
        default_value_t = 10,
        global = true
    )]
    pub ws_heartbeat_secs: u64,

    /// Calls all read-only viewers (dashboards) together may make per second; over it they
    /// wait, so that people watching never slow the agents down. Each viewer connection also
    /// has its own 10 per second (30 at once).
    #[arg(
        long,
        env = "COLLAB_HUB_VIEWER_READS_PER_SEC",
        default_value_t = 50.0,
        global = true
    )]
    pub viewer_reads_per_sec: f64,

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

    /// Compact completed sessions last active more than this many days ago: their events and
    /// older snapshots go, a final snapshot stays (they still resume and export). 0: never.
    #[arg(
        long,
        env = "COLLAB_HUB_RETENTION_DAYS",
        default_value_t = 0,
        global = true
    )]
    pub retention_days: u32,

    /// Compact a completed session as soon as its events take more than this many bytes.
    /// 0: no limit.
    #[arg(
        long,
        env = "COLLAB_HUB_RETENTION_MAX_BYTES",
        default_value_t = 0,
        global = true
    )]
    pub retention_max_bytes: u64,

    /// A session nobody used for this many seconds, that nothing watches (no open stream,
    /// viewer or long poll) and nothing waits on (a deadline, a checkpoint), leaves memory; a
    /// project all of whose sessions did leaves with its lock table, and hands its lease back
    /// (on a shared PostgreSQL). The next request loads either again. 0 keeps everything
    /// loaded.
    #[arg(
        long,
        env = "COLLAB_HUB_IDLE_SECS",
        default_value_t = 900,
        global = true
    )]
    pub idle_secs: u64,

    /// How often the retention sweep looks for sessions to compact.
    #[arg(
        long,
        env = "COLLAB_HUB_RETENTION_INTERVAL_SECS",
        default_value_t = 3600,
        global = true
    )]
    pub retention_interval_secs: u64,

    /// Genomes per task type's population (the genetic algorithm's population size).
    #[arg(
        long,
        env = "COLLAB_HUB_EVOLUTION_POPULATION",
        default_value_t = 12,
        global = true
    )]
    pub evolution_population: usize,

    /// Scored sessions of a task type that close a generation and breed the next.
    #[arg(
        long,
        env = "COLLAB_HUB_EVOLUTION_SESSIONS_PER_GENERATION",
        default_value_t = 12,
        global = true
    )]
    pub evolution_sessions_per_generation: usize,

    /// Seed of a new population's random numbers (the same seed breeds the same way); by
    /// default a new population takes one from the clock. A population keeps its generator's
    /// state, so a restart continues it.
    #[arg(long, env = "COLLAB_HUB_EVOLUTION_SEED", global = true)]
    pub evolution_seed: Option<u64>,

    /// Fitness weights as JSON, e.g. '{"tasksCompleted": 100, "durationHours": -20}'; names
    /// left out keep the concept's weights.
    #[arg(long, env = "COLLAB_HUB_FITNESS_WEIGHTS", global = true)]
    pub fitness_weights: Option<String>,

    /// Hubs on PostgreSQL: seconds a hub's leases (its projects', and the `hub` row) last
    /// without renewal (renewed every third). How long a hub may lose the database (a restart
    /// of it) and carry on (past it, it lets its projects go and takes them again once the
    /// database answers), and how long a hub gone silent (its machine or network) keeps its
    /// projects from the other hubs. A killed hub is replaced at once, whatever this is (its
    /// life lock).
    #[arg(
        long,
        env = "COLLAB_HUB_LEASE_SECS",
        default_value_t = 15,
        global = true
    )]
    pub lease_secs: u64,

    /// Several hubs on one PostgreSQL: the URL the other hubs reach this one at (they pass on
    /// the requests for the projects it serves). Unique per hub. [default: http://<--bind>, 127.0.0.1 for 0.0.0.0]
    #[arg(long, env = "COLLAB_HUB_ADVERTISE_URL", global = true)]
    pub advertise_url: Option<String>,
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
            ws_heartbeat_secs: 10,
            viewer_reads_per_sec: 50.0,
            workers: Some(2),
            message_rate: 5.0,
            message_burst: 30,
            disconnect_grace_secs: 120,
            conflict_window_secs: 600,
            retention_days: 0,
            retention_max_bytes: 0,
            retention_interval_secs: 3600,
            idle_secs: 900,
            evolution_population: 12,
            evolution_sessions_per_generation: 12,
            evolution_seed: None,
            fitness_weights: None,
            lease_secs: 15,
            advertise_url: None,
        }
    }

    /// What `--evolution-*` and `--fitness-weights` ask for, checked.
    pub fn evolution(&self) -> Result<crate::actors::evolution::EvolutionSettings, String> {
        use crate::domain::evolution::EvolutionConfig;
        let config = EvolutionConfig {
            population_size: self.evolution_population,
            sessions_per_generation: self.evolution_sessions_per_generation,
            elite_count: EvolutionConfig::default()
                .elite_count
                .min(self.evolution_population.saturating_sub(1)),
            tournament_size: EvolutionConfig::default()
                .tournament_size
                .min(self.evolution_population),
            ..EvolutionConfig::default()
        };
        config
            .validate()
            .map_err(|e| format!("--evolution-*: {e}"))?;
        let weights: crate::domain::fitness::FitnessWeights = match &self.fitness_weights {
            None => Default::default(),
            Some(text) => serde_json::from_str(text)
                .map_err(|e| format!("--fitness-weights is not valid weights JSON: {e}"))?,
        };
        weights
            .validate()
            .map_err(|e| format!("--fitness-weights: {e}"))?;
        Ok(crate::actors::evolution::EvolutionSettings {
            config,
            weights,
            seed: self.evolution_seed,
        })
    }

    /// What `--retention-*` ask for.
    pub fn retention(&self) -> crate::domain::retention::RetentionPolicy {
        crate::domain::retention::RetentionPolicy {
            max_age: (self.retention_days > 0)
                .then(|| chrono::Duration::days(i64::from(self.retention_days))),
            max_bytes: (self.retention_max_bytes > 0).then_some(self.retention_max_bytes),
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
