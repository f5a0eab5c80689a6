-- Dispensers allowed to redeem codes; each signs its requests with its secret (an HMAC key,
-- shown once when it is registered).
CREATE TABLE devices (
    id UUID PRIMARY KEY,
    name TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX devices_newest_first ON devices (created_at DESC, id DESC);

-- The dispensable units of each paid order, from `order.paid`.
CREATE TABLE pickups (
    order_id UUID NOT NULL,
    product_id UUID NOT NULL,
    name TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, product_id)
);

-- One code per unit to hand out; an expired one is replaced by a new one on request.
CREATE TABLE codes (
    id UUID PRIMARY KEY,
    order_id UUID NOT NULL,
    product_id UUID NOT NULL,
    unit BIGINT NOT NULL,
    issued_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    redeemed_at TIMESTAMPTZ,
    redeemed_by UUID,
    revoked BOOLEAN NOT NULL
);
CREATE INDEX codes_by_order ON codes (order_id, product_id, unit);

-- Orders whose every unit was handed out: `pickup.completed` is published once.
CREATE TABLE completed_pickups (
    order_id UUID PRIMARY KEY,
    completed_at TIMESTAMPTZ NOT NULL
);
