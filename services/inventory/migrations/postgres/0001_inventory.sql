-- One row per product: its units available to order, held for orders not yet completed, and
-- sold. Every change is a movement; none of the three ever goes below zero.
CREATE TABLE stock (
    id UUID PRIMARY KEY,
    product_id UUID NOT NULL CONSTRAINT stock_product UNIQUE,
    product_name TEXT NOT NULL,
    available BIGINT NOT NULL CHECK (available >= 0),
    reserved BIGINT NOT NULL CHECK (reserved >= 0),
    sold BIGINT NOT NULL CHECK (sold >= 0),
    low_stock_threshold BIGINT NOT NULL CHECK (low_stock_threshold >= 0),
    -- At or below the threshold since `stock.low` was last published.
    low BOOLEAN NOT NULL,
    version BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX stock_newest_first ON stock (created_at DESC, id DESC);

CREATE TABLE stock_movements (
    id UUID PRIMARY KEY,
    inventory_id UUID NOT NULL REFERENCES stock (id),
    product_id UUID NOT NULL,
    reason TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    available BIGINT NOT NULL,
    reserved BIGINT NOT NULL,
    sold BIGINT NOT NULL,
    order_id UUID,
    actor TEXT NOT NULL,
    note TEXT,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX stock_movements_by_item ON stock_movements (inventory_id, created_at DESC, id DESC);

-- What an order holds of a product until it completes, fails, is cancelled or its hold expires.
CREATE TABLE reservations (
    order_id UUID NOT NULL,
    product_id UUID NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    status TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (order_id, product_id)
);
CREATE INDEX reservations_expiring ON reservations (expires_at) WHERE status = 'HELD';
