ALTER TABLE mcp_sessions DROP COLUMN writer;
