-- Step 10: on PostgreSQL this adds the trigger that notifies other hubs of new events
-- (src/store/tail.rs). SQLite has one hub per file and nothing to notify; the migration exists
-- so that both backends stay at the same schema version, which backups carry and restores
-- compare.
SELECT 1;
