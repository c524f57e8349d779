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
