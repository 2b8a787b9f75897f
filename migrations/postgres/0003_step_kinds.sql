-- Step kinds beyond step.run (timers, waits, invocations), cancellation and replays.

-- A queue item with `resume` set calls no host: the executor memoizes resume.memo under the
-- item's step id and runs discovery. Sleeps and the timeouts of waits are such items; a
-- matching event turns a wait's timeout item into one due now.
ALTER TABLE queue ADD COLUMN resume jsonb;
CREATE INDEX queue_run_step ON queue (run_id, step_id);

-- Runs waiting in step.wait_for_event (kind 'event') or step.invoke (kind 'invoke', waiting
-- for the inngest/function.finished event of the invoked run). The row is removed when the
-- wait resumes, so it is matched at most once.
CREATE TABLE waits (
  run_id        text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  step_id       text NOT NULL,
  function_id   text NOT NULL,
  event_name    text NOT NULL,
  expression    text NOT NULL DEFAULT '',
  kind          text NOT NULL,
  created_at_ms bigint NOT NULL,
  expires_at_ms bigint NOT NULL,
  PRIMARY KEY (run_id, step_id)
);
CREATE INDEX waits_event ON waits (event_name, created_at_ms);

-- Wait look-back reads recent events by name and time.
CREATE INDEX events_name_received ON events (name, received_at_ms);

-- A replay is another run of the same function for the same event.
ALTER TABLE runs DROP CONSTRAINT IF EXISTS runs_function_id_event_id_key;
CREATE INDEX runs_function_event ON runs (function_id, event_id);
