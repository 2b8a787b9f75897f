-- The cancel_on outbox (see migrations/postgres/0024_pending_cancels.sql): an event that
-- matches a cancel_on is recorded with it; coordinators cancel its runs and delete the row.
CREATE TABLE pending_cancels (
  event_id       TEXT PRIMARY KEY REFERENCES events (internal_id),
  received_at_ms INTEGER NOT NULL
);
CREATE INDEX pending_cancels_received ON pending_cancels (received_at_ms);
