DROP TABLE populations;
DROP TABLE session_outcomes;
ALTER TABLE sessions DROP COLUMN genome;
