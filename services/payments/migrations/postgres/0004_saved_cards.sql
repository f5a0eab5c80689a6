-- A seed-004 payment is charged to the card its customer saved (looked up from users).
ALTER TABLE payments ADD COLUMN saved_card BOOLEAN NOT NULL DEFAULT FALSE;
-- What it is for, in the customer's words, for their receipt.
ALTER TABLE payments ADD COLUMN item TEXT;
