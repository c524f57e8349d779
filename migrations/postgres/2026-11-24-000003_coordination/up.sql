-- Step 4: a session's coordination state (handshake phase, role requests, rotation) and the
-- change ledger. Keep in step with migrations/sqlite.

-- JSON: {"handshake": {"state": "idle"|…}, "roleRequests": […], "pendingRoles": …, "roleSince": …}
ALTER TABLE sessions ADD COLUMN coordination TEXT NOT NULL DEFAULT '{}';
-- Automatic rotation swaps driver and navigator after this many seconds (0: manual only).
ALTER TABLE sessions ADD COLUMN rotation_interval_secs INTEGER NOT NULL DEFAULT 0;
-- A handshake waiting this long for a reviewer raises an alert.
ALTER TABLE sessions ADD COLUMN review_timeout_secs INTEGER NOT NULL DEFAULT 600;

-- The first schema's ledger table was never written; a change is keyed by the id of the event
-- that announced it, like messages.
DROP TABLE code_changes;
CREATE TABLE code_changes (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    id BIGINT NOT NULL,
    ai_id TEXT NOT NULL,
    co_author TEXT,
    operation TEXT NOT NULL CHECK (operation IN ('edit', 'create', 'delete', 'rename')),
    file_path TEXT NOT NULL,
    new_path TEXT,
    diff TEXT,
    lines TEXT NOT NULL,
    symbols TEXT NOT NULL,
    reason TEXT,
    created_at TIMESTAMP NOT NULL,
    task_id BIGINT,
    PRIMARY KEY (session_id, id)
);
CREATE INDEX code_changes_file ON code_changes (session_id, file_path, id);

-- Locks are leases: a request is keyed by the id of the event that recorded it; a grant's
-- fencing token is the id of the event that announced it. Released rows stay as history.
DROP TABLE locks;
CREATE TABLE locks (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    id BIGINT NOT NULL,
    resource TEXT NOT NULL,
    holder TEXT NOT NULL,
    mode TEXT NOT NULL CHECK (mode IN ('exclusive', 'shared')),
    operation TEXT,
    state TEXT NOT NULL CHECK (state IN ('waiting', 'held', 'released')),
    lease_secs INTEGER NOT NULL,
    fencing_token BIGINT,
    requested_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP,
    released_at TIMESTAMP,
    release_reason TEXT,
    task_id BIGINT,
    PRIMARY KEY (session_id, id)
);
CREATE INDEX locks_open ON locks (session_id, state);

-- Suggestions: a proposed change, by someone who may suggest, for the driver to accept (it then
-- becomes a change attributed to both) or reject (kept with its reason).
CREATE TABLE suggestions (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    id BIGINT NOT NULL,
    ai_id TEXT NOT NULL,
    file_path TEXT NOT NULL,
    diff TEXT NOT NULL,
    lines TEXT NOT NULL,
    reason TEXT,
    task_id BIGINT,
    status TEXT NOT NULL CHECK (status IN ('pending', 'accepted', 'rejected')),
    resolved_by TEXT,
    note TEXT,
    change_id BIGINT,
    created_at TIMESTAMP NOT NULL,
    resolved_at TIMESTAMP,
    PRIMARY KEY (session_id, id)
);

-- Skills per participant (JSON list) for skill-based assignment; the session's default strategy.
ALTER TABLE participants ADD COLUMN skills TEXT NOT NULL DEFAULT '[]';
ALTER TABLE sessions ADD COLUMN task_allocation TEXT NOT NULL DEFAULT 'loadBalanced';

-- Tasks: keyed by the id of the event that created them; dependencies and skills as JSON lists.
DROP TABLE tasks;
CREATE TABLE tasks (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    id BIGINT NOT NULL,
    parent_id BIGINT,
    description TEXT NOT NULL,
    assigned_to TEXT,
    status TEXT NOT NULL CHECK (status IN ('pending', 'in_progress', 'completed', 'blocked')),
    blocked_reason TEXT,
    dependencies TEXT NOT NULL,
    skills TEXT NOT NULL,
    estimated_secs INTEGER,
    metadata TEXT NOT NULL,
    handoff TEXT,
    created_by TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    completed_at TIMESTAMP,
    PRIMARY KEY (session_id, id)
);
