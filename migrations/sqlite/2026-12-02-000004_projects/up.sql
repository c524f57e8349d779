-- Step 5: a session belongs to a project (a key such as the repository's path or remote).
-- Files belong to the codebase, so the sessions of one project will share one lock table.
-- Keep in step with the other backend's migration.
ALTER TABLE sessions ADD COLUMN project TEXT NOT NULL DEFAULT 'default';
CREATE INDEX sessions_by_project ON sessions (project, updated_at);
