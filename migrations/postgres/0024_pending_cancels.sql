-- The cancel_on outbox: an event that matches a function's cancel_on is recorded here in the
-- transaction that stores it. Coordinators cancel the runs it matches after the commit and
-- then delete the row; a row left by a crash, or by a failure to list or cancel the runs, is
-- done again by any coordinator's sweep, as of the event's receipt. Doing it twice is
-- harmless: a run cancelled already is not cancelled again.
CREATE TABLE pending_cancels (
  event_id       text PRIMARY KEY REFERENCES events (internal_id),
  received_at_ms bigint NOT NULL
);
CREATE INDEX pending_cancels_received ON pending_cancels (received_at_ms);
