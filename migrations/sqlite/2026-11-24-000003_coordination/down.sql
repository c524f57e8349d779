DROP TABLE tasks;
ALTER TABLE sessions DROP COLUMN task_allocation;
ALTER TABLE participants DROP COLUMN skills;
DROP TABLE suggestions;
DROP TABLE locks;
DROP TABLE code_changes;
ALTER TABLE sessions DROP COLUMN review_timeout_secs;
ALTER TABLE sessions DROP COLUMN rotation_interval_secs;
ALTER TABLE sessions DROP COLUMN coordination;
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

