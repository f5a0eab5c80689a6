-- Every order has a number, 1, 2, 3… in the order they were placed: seed 001's `orderID`. SQLite
-- has no sequences: the last number handed out is kept in a row of its own, moved in the
-- transaction that stores the orders (SQLite's one writer at a time makes that safe).
ALTER TABLE orders ADD COLUMN number INTEGER;
UPDATE orders SET number = (
    SELECT COUNT(*) FROM orders AS earlier
    WHERE earlier.created_at < orders.created_at
       OR (earlier.created_at = orders.created_at AND earlier.id <= orders.id)
);
CREATE UNIQUE INDEX orders_by_number ON orders (number);
CREATE TABLE order_numbers (last INTEGER NOT NULL);
INSERT INTO order_numbers (last) SELECT COALESCE(MAX(number), 0) FROM orders;
