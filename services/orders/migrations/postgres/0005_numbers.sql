-- Every order has a number, 1, 2, 3… in the order they were placed: seed 001's `orderID`. A
-- sequence hands them out without a lock, so orders placed side by side never wait on each other;
-- a number taken by a transaction that rolled back is skipped.
CREATE SEQUENCE order_numbers;
ALTER TABLE orders ADD COLUMN number BIGINT;
WITH numbered AS (
    SELECT id, row_number() OVER (ORDER BY created_at, id) AS n FROM orders
)
UPDATE orders SET number = numbered.n FROM numbered WHERE orders.id = numbered.id;
SELECT setval('order_numbers', COALESCE((SELECT MAX(number) FROM orders), 0) + 1, false);
ALTER TABLE orders ALTER COLUMN number SET NOT NULL;
CREATE UNIQUE INDEX orders_by_number ON orders (number);
