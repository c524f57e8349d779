-- collab-hub schema, SQLite flavour. UUIDs and JSON are stored as TEXT on both backends;
-- timestamps are UTC. Keep in step with migrations/postgres.

CREATE TABLE sessions (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'paused', 'completed')),
    handshake_mode TEXT NOT NULL CHECK (handshake_mode IN ('strict', 'loose')),
    rotation_policy TEXT NOT NULL CHECK (rotation_policy IN ('manual', 'automatic')),
    save_interval INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    last_event_id BIGINT NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX sessions_updated_at ON sessions (updated_at);

CREATE TABLE participants (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    ai_id TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('driver', 'navigator', 'observer')),
    permissions TEXT NOT NULL,
    token_digest TEXT NOT NULL,
    joined_at TIMESTAMP NOT NULL,
    left_at TIMESTAMP,
    acked_event_id BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (session_id, ai_id)
);
CREATE INDEX participants_token_digest ON participants (token_digest);

-- Append-only log: one row per state change; id is monotonic per session.
CREATE TABLE events (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    id BIGINT NOT NULL,
    actor TEXT,
    kind TEXT NOT NULL,
    priority TEXT NOT NULL CHECK (priority IN ('critical', 'important', 'routine')),
    payload TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (session_id, id)
);

CREATE TABLE context_snapshots (
    id TEXT PRIMARY KEY NOT NULL,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    event_id BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    encoding TEXT NOT NULL CHECK (encoding IN ('json', 'zstd')),
    context BLOB NOT NULL,
    trigger TEXT NOT NULL CHECK (trigger IN ('manual', 'auto', 'milestone'))
);
CREATE INDEX context_snapshots_session ON context_snapshots (session_id, event_id);

CREATE TABLE messages (
    id TEXT PRIMARY KEY NOT NULL,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    event_id BIGINT NOT NULL,
    from_ai TEXT NOT NULL,
    to_ai TEXT,
    priority TEXT NOT NULL CHECK (priority IN ('critical', 'important', 'routine')),
    body TEXT NOT NULL,
    reply_to TEXT,
    requires_ack BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX messages_session ON messages (session_id, event_id);

CREATE TABLE message_acks (
    message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    ai_id TEXT NOT NULL,
    read_at TIMESTAMP,
    acked_at TIMESTAMP,
    PRIMARY KEY (message_id, ai_id)
);

CREATE TABLE tasks (
    id TEXT PRIMARY KEY NOT NULL,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    parent_id TEXT REFERENCES tasks (id) ON DELETE CASCADE,
    description TEXT NOT NULL,
    assigned_to TEXT,
    status TEXT NOT NULL CHECK (status IN ('pending', 'in_progress', 'completed', 'blocked')),
    metadata TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    completed_at TIMESTAMP
);
CREATE INDEX tasks_session ON tasks (session_id);

CREATE TABLE code_changes (
    id TEXT PRIMARY KEY NOT NULL,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    ai_id TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    operation TEXT NOT NULL CHECK (operation IN ('edit', 'create', 'delete', 'rename')),
    file_path TEXT NOT NULL,
    diff TEXT,
    metadata TEXT NOT NULL
);
CREATE INDEX code_changes_session ON code_changes (session_id, created_at);

CREATE TABLE locks (
    id TEXT PRIMARY KEY NOT NULL,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    resource TEXT NOT NULL,
    holder TEXT NOT NULL,
    mode TEXT NOT NULL CHECK (mode IN ('exclusive', 'shared')),
    operation TEXT,
    fencing_token BIGINT NOT NULL,
    acquired_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    released_at TIMESTAMP
);
CREATE INDEX locks_session_resource ON locks (session_id, resource);
