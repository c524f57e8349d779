-- Step 6: whole-session snapshots (session_save, auto-save every saveInterval, milestones).
-- A snapshot holds the session's full state as of event_id: context, participants and roles,
-- handshake, tasks, each participant's cursor and unread count, the locks its participants
-- hold. Keep in step with the other backend's migration.
CREATE TABLE session_snapshots (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    id BIGINT NOT NULL,
    event_id BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    trigger TEXT NOT NULL CHECK (trigger IN ('manual', 'auto', 'milestone')),
    encoding TEXT NOT NULL CHECK (encoding IN ('json', 'zstd')),
    bytes BIGINT NOT NULL,
    state BYTEA NOT NULL,
    PRIMARY KEY (session_id, id)
);
