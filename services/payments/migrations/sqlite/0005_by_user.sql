-- A customer's own payments, newest first (what a signed-in customer's list reads).
CREATE INDEX payments_by_user ON payments (user_id, created_at DESC, id DESC);
