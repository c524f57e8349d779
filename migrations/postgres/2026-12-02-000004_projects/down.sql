ALTER TABLE sessions DROP COLUMN project;
