-- Orders changed since the ClickHouse sink last sent them, queued in the same transaction as
-- the change (only while a sink is configured); the sink deletes what it has sent.
CREATE TABLE sink_queue (
    seq BIGSERIAL PRIMARY KEY,
    order_id UUID NOT NULL
);

-- Sinks that have run on this database: a new one first queues every order.
CREATE TABLE sink_state (
    name TEXT PRIMARY KEY,
    started_at TIMESTAMPTZ NOT NULL
);
