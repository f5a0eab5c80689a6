-- Dispensers allowed to redeem codes; each signs its requests with its secret (an HMAC key,
-- shown once when it is registered).
CREATE TABLE devices (
    id BLOB PRIMARY KEY,
    name TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX devices_newest_first ON devices (created_at DESC, id DESC);

-- The dispensable units of each paid order, from `order.paid`.
CREATE TABLE pickups (
    order_id BLOB NOT NULL,
    product_id BLOB NOT NULL,
    name TEXT NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, product_id)
);

-- One code per unit to hand out; an expired one is replaced by a new one on request.
CREATE TABLE codes (
    id BLOB PRIMARY KEY,
    order_id BLOB NOT NULL,
    product_id BLOB NOT NULL,
    unit INTEGER NOT NULL,
    issued_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    redeemed_at TEXT,
    redeemed_by BLOB,
    revoked INTEGER NOT NULL
);
CREATE INDEX codes_by_order ON codes (order_id, product_id, unit);

-- Orders whose every unit was handed out: `pickup.completed` is published once.
CREATE TABLE completed_pickups (
    order_id BLOB PRIMARY KEY,
    completed_at TEXT NOT NULL
);
