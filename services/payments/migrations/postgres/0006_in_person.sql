-- How an in-person payment (seed 002) is made: 'Cash' at the counter or 'QRIS' by scanning;
-- NULL for payments charged through the provider.
ALTER TABLE payments ADD COLUMN method TEXT;
