-- Step 10: a write in flight on a killed owner is answered, not refused. A standby gives each
-- write it forwards a random key (`x-collab-hub-request`) and, when the owner dies before
-- answering, sends it again with the same key to the next owner. The write's transaction
-- records its key here, so the row exists exactly when the write committed: the next owner
-- finds it and answers "already applied" (409) instead of applying it twice. Rows older than
-- 30 minutes are deleted (a resend comes within minutes: src/store/applied.rs, KEPT). Keep in step with migrations/postgres.
CREATE TABLE applied_requests (
    key TEXT PRIMARY KEY NOT NULL,
    session_id TEXT NOT NULL,
    first_event BIGINT,
    last_event BIGINT,
    -- What a resend is answered with when it is not "already applied": a read that marked
    -- messages read keeps the page it returned (its ids as JSON), so that a page lost with
    -- its owner is returned again, not lost.
    detail TEXT,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX applied_requests_created ON applied_requests (created_at);
