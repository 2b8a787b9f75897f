-- The wait look-back outbox (see migrations/postgres/0005_wait_lookbacks.sql).
ALTER TABLE waits ADD COLUMN lookback_from_ms INTEGER;
CREATE INDEX waits_lookback ON waits (created_at_ms) WHERE lookback_from_ms IS NOT NULL;
