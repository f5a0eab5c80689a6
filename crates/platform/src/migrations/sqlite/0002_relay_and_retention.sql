-- The relay reads after a cursor and needs no per-row claim (see outbox.rs).
ALTER TABLE outbox DROP COLUMN locked_until;
ALTER TABLE outbox DROP COLUMN attempts;

-- Retention by age, removed in bounded batches oldest first.
CREATE INDEX inbox_handled_at ON inbox (handled_at);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
