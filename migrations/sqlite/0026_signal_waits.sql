-- A wait's signal (see migrations/postgres/0030_signal_waits.sql).
ALTER TABLE waits ADD COLUMN signal TEXT;
CREATE UNIQUE INDEX waits_signal ON waits (signal) WHERE signal IS NOT NULL;
