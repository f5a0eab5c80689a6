-- Money to give back, written in the transaction that decides it (a cancelled order's approved
-- payment, or a charge the provider approved after its payment was cancelled) and kept until the
-- provider has confirmed the refund.
CREATE TABLE refunds (
    payment_id BLOB PRIMARY KEY REFERENCES payments (id),
    -- 'refund': the payment becomes REFUNDED once confirmed; 'void': it stays CANCELLED.
    kind TEXT NOT NULL CHECK (kind IN ('refund', 'void')),
    correlation_id TEXT NOT NULL,
    causation_id BLOB,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    next_attempt_at TEXT NOT NULL,
    requested_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX refunds_due ON refunds (next_attempt_at);
