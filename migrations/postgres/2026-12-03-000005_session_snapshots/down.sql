DROP TABLE session_snapshots;
