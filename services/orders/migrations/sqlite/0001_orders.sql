CREATE TABLE orders (
    id BLOB PRIMARY KEY,
    user_id BLOB NOT NULL,
    total_minor INTEGER NOT NULL CHECK (total_minor > 0),
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    failure_reason TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX orders_newest_first ON orders (created_at DESC, id DESC);
