-- One row per product: its units available to order, held for orders not yet completed, and
-- sold. Every change is a movement; none of the three ever goes below zero.
CREATE TABLE stock (
    id BLOB PRIMARY KEY,
    product_id BLOB NOT NULL CONSTRAINT stock_product UNIQUE,
    product_name TEXT NOT NULL,
    available INTEGER NOT NULL CHECK (available >= 0),
    reserved INTEGER NOT NULL CHECK (reserved >= 0),
    sold INTEGER NOT NULL CHECK (sold >= 0),
    low_stock_threshold INTEGER NOT NULL CHECK (low_stock_threshold >= 0),
    -- At or below the threshold since `stock.low` was last published.
    low INTEGER NOT NULL,
    version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX stock_newest_first ON stock (created_at DESC, id DESC);

CREATE TABLE stock_movements (
    id BLOB PRIMARY KEY,
    inventory_id BLOB NOT NULL REFERENCES stock (id),
    product_id BLOB NOT NULL,
    reason TEXT NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    available INTEGER NOT NULL,
    reserved INTEGER NOT NULL,
    sold INTEGER NOT NULL,
    order_id BLOB,
    actor TEXT NOT NULL,
    note TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX stock_movements_by_item ON stock_movements (inventory_id, created_at DESC, id DESC);

-- What an order holds of a product until it completes, fails, is cancelled or its hold expires.
CREATE TABLE reservations (
    order_id BLOB NOT NULL,
    product_id BLOB NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    status TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (order_id, product_id)
);
CREATE INDEX reservations_expiring ON reservations (expires_at) WHERE status = 'HELD';
