-- Payments recorded by hand (seed 000's: a member pays at the desk, by card or in cash), beside
-- the checkout payments the processor charges. Amounts in hundredths, exactly.
CREATE TABLE manual_payments (
    id BLOB PRIMARY KEY,
    version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    member_id BLOB NOT NULL,
    amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
    currency TEXT NOT NULL,
    payment_method TEXT NOT NULL,
    status TEXT NOT NULL,
    paid_at TEXT
);
CREATE INDEX manual_payments_newest_first ON manual_payments (created_at DESC, id DESC);
CREATE INDEX manual_payments_by_member ON manual_payments (member_id, created_at DESC, id DESC);
