-- The number of a payment's order (seed 001's `orderID`), as `order.created` tells it; none for
-- orders placed before orders numbered them.
ALTER TABLE payments ADD COLUMN order_number BIGINT;
CREATE UNIQUE INDEX payments_by_order_number ON payments (order_number DESC) WHERE order_number IS NOT NULL;
