-- Retention (--retain) deletes finished runs, and events no run refers to, oldest first, a
-- batch at a time. Without an index led by the time it compares, each batch read every
-- finished run still inside the retention window (runs_status, newest first) before it came to
-- one old enough, and the last pass of each round read the whole events table: a million runs
-- kept made each batch of 500 a million row lookups. The build locks writes to each table
-- until the migrations commit (seconds per million rows): on a large database, apply it with
-- `funcky migrate` before the new coordinators start. Earlier versions run beside it.
CREATE INDEX runs_ended ON runs (ended_at_ms) WHERE ended_at_ms IS NOT NULL;
CREATE INDEX events_received ON events (received_at_ms);
