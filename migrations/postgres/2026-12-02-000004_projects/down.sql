DROP INDEX sessions_by_project;
ALTER TABLE sessions DROP COLUMN project;
