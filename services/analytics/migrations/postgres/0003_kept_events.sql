-- The events analytics stored itself move to the platform's kept events, which are also its
-- inbox from now on: one row an event instead of an inbox row and a stored event.
INSERT INTO kept_events (consumer, event_id, envelope)
    SELECT 'analytics', id, convert_to(envelope, 'UTF8') FROM stored_events;
DROP TABLE stored_events;
