-- Step 5: a session belongs to a project (a key such as the repository's path or remote).
-- Files belong to the codebase, so the sessions of one project will share one lock table.
-- Keep in step with the other backend's migration.
--
-- No index on project: every event rewrites sessions.updated_at, so each index on sessions
-- costs every write; listing a project's sessions scans the updated_at index, which is cheap
-- for the number of sessions one hub holds.
ALTER TABLE sessions ADD COLUMN project TEXT NOT NULL DEFAULT 'default';
