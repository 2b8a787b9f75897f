-- Retention's reads of old finished runs and old events, oldest first, by an index led by the
-- time each compares (see migrations/postgres/0038_retention_indexes.sql).
CREATE INDEX runs_ended ON runs (ended_at_ms) WHERE ended_at_ms IS NOT NULL;
CREATE INDEX events_received ON events (received_at_ms);
