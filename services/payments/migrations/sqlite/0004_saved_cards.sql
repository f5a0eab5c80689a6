-- A seed-004 payment is charged to the card its customer saved (looked up from users).
ALTER TABLE payments ADD COLUMN saved_card INTEGER NOT NULL DEFAULT 0;
-- What it is for, in the customer's words, for their receipt.
ALTER TABLE payments ADD COLUMN item TEXT;
