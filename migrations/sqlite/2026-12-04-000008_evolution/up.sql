-- Step 9: collaboration genomes and their evolution. Keep in step with migrations/postgres.

-- The session's genome as JSON: {"taskType", "genome", "origin", "overridden"}; '' (sessions
-- from before this step) reads as the default genome of task type "general".
ALTER TABLE sessions ADD COLUMN genome TEXT NOT NULL DEFAULT '';

-- One row per completed session: its genome and what was measured, written in the same
-- transaction as the completion, so an outcome is never lost. `fitness` and `terms` are set in
-- the transaction that adds the score to its population (NULL: not yet scored). No foreign
-- key: the history outlives the session's retention.
CREATE TABLE session_outcomes (
    session_id TEXT PRIMARY KEY NOT NULL,
    task_type TEXT NOT NULL,
    member_id BIGINT,
    generation INTEGER,
    genome TEXT NOT NULL,
    outcome TEXT NOT NULL,
    fitness DOUBLE,
    terms TEXT,
    completed_at TIMESTAMP NOT NULL
);
CREATE INDEX session_outcomes_task_type ON session_outcomes (task_type, completed_at);

-- One population per task type, as the domain's serialized `Population` (members, results,
-- RNG state, generation history).
CREATE TABLE populations (
    task_type TEXT PRIMARY KEY NOT NULL,
    state TEXT NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
