-- What a seed-004 order is for, in the customer's words (its `item`).
ALTER TABLE orders ADD COLUMN item TEXT;
