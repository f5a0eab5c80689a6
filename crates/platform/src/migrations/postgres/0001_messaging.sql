-- Events waiting to be published; a row goes when the bus has confirmed it.
CREATE TABLE outbox (
    seq BIGSERIAL PRIMARY KEY,
    id UUID NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    body BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    locked_until TIMESTAMPTZ,
    attempts BIGINT NOT NULL DEFAULT 0
);

-- Events a consumer has handled, written in the transaction of their effect.
CREATE TABLE inbox (
    consumer TEXT NOT NULL,
    event_id UUID NOT NULL,
    handled_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (consumer, event_id)
);

-- Messages a consumer gave up on (embedded mode; RabbitMQ keeps its own dead-letter queues).
CREATE TABLE dead_letters (
    id UUID PRIMARY KEY,
    consumer TEXT NOT NULL,
    topic TEXT NOT NULL,
    body BYTEA NOT NULL,
    error TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    failed_at TIMESTAMPTZ NOT NULL
);

-- The first response to each Idempotency-Key, replayed for repeats.
CREATE TABLE idempotency_keys (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status_code BIGINT,
    response BYTEA,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (scope, key)
);
