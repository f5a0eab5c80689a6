-- The relay reads after a cursor and needs no per-row claim (see outbox.rs).
ALTER TABLE outbox DROP COLUMN locked_until, DROP COLUMN attempts;

-- The outbox is churned (every row inserted, then deleted within moments) and holds few live
-- rows: where autovacuum runs, let it reach the table after a fixed number of dead rows rather
-- than a share of a table that is nearly empty, without pausing. The relay vacuums it too.
ALTER TABLE outbox SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 10000,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 10000,
    autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 10000,
    autovacuum_vacuum_cost_delay = 0
);

-- Retention by age, removed in bounded batches oldest first.
CREATE INDEX inbox_handled_at ON inbox (handled_at);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
