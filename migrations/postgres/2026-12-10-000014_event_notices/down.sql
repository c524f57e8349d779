DROP TRIGGER events_notify ON events;
DROP FUNCTION collab_hub_event_notices();
