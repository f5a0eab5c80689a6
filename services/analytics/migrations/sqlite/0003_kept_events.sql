-- The events analytics stored itself move to the platform's kept events, which are also its
-- inbox from now on: one row an event instead of an inbox row and a stored event.
INSERT INTO kept_events (consumer, event_id, envelope)
    SELECT 'analytics', id, CAST(envelope AS BLOB) FROM stored_events;
DROP TABLE stored_events;
