-- The wait outbox: an event stored while waits of its name (or, for the end of a run, an
-- invoke wait of its correlation id) are open is recorded here in the transaction that stores
-- it. The coordinator that stored it resumes the waits it matches after the commit and then
-- deletes the row; a row left by a crash between the commit and the resumes, or by a resume
-- that failed, is done again by any coordinator's sweep, as of the event's receipt (waits
-- registered before it). Doing it twice is harmless: a resumed wait is gone.
CREATE TABLE pending_resumes (
  event_id       text PRIMARY KEY REFERENCES events (internal_id),
  received_at_ms bigint NOT NULL
);
CREATE INDEX pending_resumes_received ON pending_resumes (received_at_ms);
-- Event waits of a name without the invoke waits, all named inngest/function.finished:
-- the outbox's test and the ingest's read of waits skip those (waits_invoke finds them).
CREATE INDEX waits_event_only ON waits (event_name, created_at_ms) WHERE kind <> 'invoke';
