//! Integration tests: the real hub on port 0, a fresh database per test, HTTP from outside.
//! Every test runs twice, on SQLite and on PostgreSQL (see `helpers::both_backends!`).

mod helpers;

mod agent_clis;
mod agent_config_sdk;
mod agent_setup;
mod backup;
mod batch;
mod cli;
mod context;
mod coordination;
mod crash;
mod dashboard;
mod delivery;
mod disputes;
mod event_log_size;
mod evolution;
mod export;
mod genes_control;
mod genes_work;
mod health;
mod lock_concurrency;
mod locks;
mod mcp_conformance;
mod mcp_handshake;
mod mcp_multiday;
mod mcp_notifications;
mod mcp_protocol;
mod mcp_restart;
mod mcp_sdk;
mod mcp_team;
mod messaging;
mod multi_hub;
mod parity;
mod pipeline;
mod resend_writes;
mod resume;
mod retention;
mod safety;
mod security;
mod sessions;
mod silent_database;
mod snapshots;
mod store_batch;
mod tasks;
mod ws;
