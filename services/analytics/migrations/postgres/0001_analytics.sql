-- Every event analytics was given, as it came: what `kassa analytics rebuild` replays to make
-- the tables below again from scratch.
CREATE TABLE stored_events (
    seq BIGSERIAL PRIMARY KEY,
    id UUID NOT NULL UNIQUE,
    type TEXT NOT NULL,
    time TIMESTAMPTZ NOT NULL,
    envelope TEXT NOT NULL
);

-- One row per order, made from whichever of its events came first and completed by the others
-- (they may come in any order). The figures below are sums of what each order contributes.
CREATE TABLE order_facts (
    order_id UUID PRIMARY KEY,
    order_number BIGINT,
    placed_at TIMESTAMPTZ,
    currency TEXT,
    total_minor BIGINT,
    method TEXT,
    item TEXT,
    -- The products ordered, as `order.created` priced them (JSON).
    lines TEXT NOT NULL,
    paid_minor BIGINT NOT NULL,
    refunded_minor BIGINT NOT NULL,
    paid BOOLEAN NOT NULL,
    failed BOOLEAN NOT NULL,
    cancelled BOOLEAN NOT NULL,
    completed BOOLEAN NOT NULL,
    status TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX order_facts_newest_first ON order_facts (placed_at DESC, order_id DESC);
CREATE INDEX order_facts_by_status ON order_facts (status, placed_at DESC, order_id DESC);

-- The orders placed in each quarter hour (UTC), by currency: every time zone's days and hours
-- begin on a quarter hour, so any local range is a range of slots.
CREATE TABLE sales_slots (
    slot BIGINT NOT NULL,
    currency TEXT NOT NULL,
    orders BIGINT NOT NULL,
    pending BIGINT NOT NULL,
    paid BIGINT NOT NULL,
    completed BIGINT NOT NULL,
    failed BIGINT NOT NULL,
    cancelled BIGINT NOT NULL,
    paid_orders BIGINT NOT NULL,
    revenue_minor BIGINT NOT NULL,
    refunded_orders BIGINT NOT NULL,
    refunds_minor BIGINT NOT NULL,
    PRIMARY KEY (slot, currency)
);

-- Units and revenue of each product in orders paid and not cancelled, by the quarter hour the
-- order was placed in.
CREATE TABLE product_slots (
    slot BIGINT NOT NULL,
    product_id UUID NOT NULL,
    currency TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    revenue_minor BIGINT NOT NULL,
    PRIMARY KEY (slot, product_id, currency)
);

-- Products' names: the catalog's, else as an order named them.
CREATE TABLE products (
    product_id UUID PRIMARY KEY,
    name TEXT NOT NULL,
    from_catalog BOOLEAN NOT NULL
);

-- How many events of each type came in each quarter hour (sign-ups, low stock, pickups…).
CREATE TABLE activity_slots (
    slot BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    events BIGINT NOT NULL,
    PRIMARY KEY (slot, event_type)
);
