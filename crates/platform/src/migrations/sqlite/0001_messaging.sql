-- Events waiting to be published; a row goes when the bus has confirmed it.
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id BLOB NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    body BLOB NOT NULL,
    created_at TEXT NOT NULL,
    locked_until TEXT,
    attempts INTEGER NOT NULL DEFAULT 0
);

-- Events a consumer has handled, written in the transaction of their effect.
CREATE TABLE inbox (
    consumer TEXT NOT NULL,
    event_id BLOB NOT NULL,
    handled_at TEXT NOT NULL,
    PRIMARY KEY (consumer, event_id)
) WITHOUT ROWID;

-- Messages a consumer gave up on after its last attempt.
CREATE TABLE dead_letters (
    id BLOB PRIMARY KEY,
    consumer TEXT NOT NULL,
    topic TEXT NOT NULL,
    body BLOB NOT NULL,
    error TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    failed_at TEXT NOT NULL
);

-- The first response to each Idempotency-Key, replayed for repeats.
CREATE TABLE idempotency_keys (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status_code INTEGER,
    response BLOB,
    created_at TEXT NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
