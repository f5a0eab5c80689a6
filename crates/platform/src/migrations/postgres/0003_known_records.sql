-- What a service knows of other services' records from their `<kind>.created|updated|deleted`
-- events: that one exists, or existed and was deleted (ids are never reused, so a deletion is
-- final whatever order the events arrive in).
CREATE TABLE known_records (
    kind TEXT NOT NULL,
    id UUID NOT NULL,
    deleted BOOLEAN NOT NULL,
    seen_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (kind, id)
);
