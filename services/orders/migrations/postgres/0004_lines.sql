-- The lines of an order for products of the catalog (seed 002), as priced when it was placed.
CREATE TABLE order_lines (
    order_id UUID NOT NULL REFERENCES orders (id),
    line INTEGER NOT NULL,
    product_id UUID NOT NULL,
    name TEXT NOT NULL,
    unit_price_minor BIGINT NOT NULL CHECK (unit_price_minor > 0),
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    is_dispensable BOOLEAN NOT NULL,
    PRIMARY KEY (order_id, line)
);
