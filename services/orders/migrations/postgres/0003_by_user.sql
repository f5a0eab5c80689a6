-- A customer's own orders, newest first (what a signed-in customer's list reads).
CREATE INDEX orders_by_user ON orders (user_id, created_at DESC, id DESC);
