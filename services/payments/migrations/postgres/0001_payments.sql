CREATE TABLE payments (
    id UUID PRIMARY KEY,
    order_id UUID NOT NULL,
    user_id UUID,
    amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    provider_reference TEXT,
    correlation_id TEXT NOT NULL,
    causation_id UUID,
    locked_until TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT payments_one_per_order UNIQUE (order_id)
);
CREATE INDEX payments_newest_first ON payments (created_at DESC, id DESC);
CREATE INDEX payments_processing ON payments (locked_until) WHERE status = 'PROCESSING';

-- What payments knows of each order, whichever of its events came first: upserting this row
-- serialises the handling of one order's created and cancelled events.
CREATE TABLE orders_seen (
    order_id UUID PRIMARY KEY,
    cancelled BOOLEAN NOT NULL,
    seen_at TIMESTAMPTZ NOT NULL
);
