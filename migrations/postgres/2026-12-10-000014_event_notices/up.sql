-- Step 10: other hubs follow a session's log through LISTEN/NOTIFY (src/store/tail.rs). Every
-- statement that inserts events notifies `collab_hub_events` once per session it wrote to, with
-- `<session id> <last event id>` (ids only: the bodies are read from `events`). A notice is
-- delivered at commit, so a follower never reads a notice of an event it cannot see, and it is
-- raised by the database for every way events are written (the session's writes, a restore).
-- One trigger call per statement: the writer inserts a batch's events in one statement.
CREATE FUNCTION collab_hub_event_notices() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('collab_hub_events', session_id || ' ' || max(id))
       FROM inserted GROUP BY session_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_notify AFTER INSERT ON events
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION collab_hub_event_notices();
