-- Every event a consumer that keeps its events was given (a projection that can be made again
-- from them), in place of its inbox rows: unique by id and never forgotten, so a redelivered
-- event is recognised however late, and the events can be replayed in the order they were made
-- (ids are time-ordered). A table with rowids: its rows are envelopes, too large to sit in the
-- key's own tree.
CREATE TABLE kept_events (
    consumer TEXT NOT NULL,
    event_id BLOB NOT NULL,
    envelope BLOB NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
