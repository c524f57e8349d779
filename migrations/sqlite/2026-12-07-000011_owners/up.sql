-- Step 10: the PostgreSQL migration of this version adds `owners`, the leases through which
-- several hubs share one database. SQLite keeps one hub per file (a file lock, src/store/claim.rs),
-- so it has no such table; this migration only keeps the two backends' versions in step.
SELECT 1;
