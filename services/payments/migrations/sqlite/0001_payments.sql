CREATE TABLE payments (
    id BLOB PRIMARY KEY,
    order_id BLOB NOT NULL,
    user_id BLOB,
    amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    provider_reference TEXT,
    correlation_id TEXT NOT NULL,
    causation_id BLOB,
    locked_until TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    CONSTRAINT payments_one_per_order UNIQUE (order_id)
);
CREATE INDEX payments_newest_first ON payments (created_at DESC, id DESC);
CREATE INDEX payments_processing ON payments (locked_until) WHERE status = 'PROCESSING';

CREATE TABLE orders_seen (
    order_id BLOB PRIMARY KEY,
    cancelled INTEGER NOT NULL,
    seen_at TEXT NOT NULL
) WITHOUT ROWID;
