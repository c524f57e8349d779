-- Step 10: the PostgreSQL migration of this version adds `owners.life` (src/store/lease.rs).
-- SQLite has no `owners` table (one hub per file); this keeps the two backends' versions in step.
SELECT 1;
