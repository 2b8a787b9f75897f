-- The wait outbox (see migrations/postgres/0027_pending_resumes.sql): an event stored while
-- waits it may resume are open is recorded with it; coordinators resume them and delete the
-- row.
CREATE TABLE pending_resumes (
  event_id       TEXT PRIMARY KEY REFERENCES events (internal_id),
  received_at_ms INTEGER NOT NULL
);
CREATE INDEX pending_resumes_received ON pending_resumes (received_at_ms);
-- Event waits of a name without the invoke waits (see the PostgreSQL migration).
CREATE INDEX waits_event_only ON waits (event_name, created_at_ms) WHERE kind <> 'invoke';
