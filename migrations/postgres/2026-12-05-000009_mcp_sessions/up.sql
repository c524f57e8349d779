-- Step 10: MCP sessions (`Mcp-Session-Id`) live in the database, so that a request reaching a
-- restarted hub finds the session it belongs to. Keep in step with migrations/sqlite.

-- `state` is the JSON the hub needs to serve the session: protocol version, the credential it
-- started with (a token's digest, never the token), the participant it is bound to, log level,
-- channel opt-in and resource subscriptions. `rev` orders the hub's updates: an older one never
-- overwrites a newer. A session unseen for the idle timeout is deleted.
CREATE TABLE mcp_sessions (
    id TEXT PRIMARY KEY NOT NULL,
    state TEXT NOT NULL,
    rev BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    last_seen_at TIMESTAMP NOT NULL
);
CREATE INDEX mcp_sessions_last_seen ON mcp_sessions (last_seen_at);
