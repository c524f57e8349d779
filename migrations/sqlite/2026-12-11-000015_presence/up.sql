-- Each participant's presence as last announced (`presence_changed`), kept on write, so that a
-- session loaded again (after a restart, or after it was let go while idle) starts from what
-- it last said instead of announcing the gone as gone once more. Keep in step with
-- migrations/postgres.
--
-- A backup carries it (a compacted session's events, which it could be read back from, are
-- gone). Sessions announced before this migration have no rows: their first load gives
-- everyone a grace period, as before.
CREATE TABLE presence (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    ai_id TEXT NOT NULL,
    state TEXT NOT NULL,
    last_seen TIMESTAMP,
    PRIMARY KEY (session_id, ai_id)
) WITHOUT ROWID;
