-- Step 10: which process wrote an MCP session's row last (its registry's id), so that a hub
-- holding the session in memory can tell its own later writes from another hub's, and never
-- overwrites a revision another hub wrote since it read the row. Keep in step with
-- migrations/sqlite.
ALTER TABLE mcp_sessions ADD COLUMN writer TEXT NOT NULL DEFAULT '';
