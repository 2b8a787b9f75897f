-- Flow control at admission (docs/flow-control.md). Numbered 0007 while 0006 is another
-- change's: the runner applies every version it has not applied, in order, gaps allowed.
--
-- One GCRA row per (function, gate, key) for `idempotency` and `rateLimit`: tat_us is the
-- theoretical arrival time in microseconds. A row whose tat_us has passed admits like a
-- missing one, so retention deletes those.
CREATE TABLE flow_rates (
  function_id text NOT NULL,
  gate        text NOT NULL,  -- idempotency | rate_limit
  key         text NOT NULL,
  tat_us      bigint NOT NULL,
  PRIMARY KEY (function_id, gate, key)
);
CREATE INDEX flow_rates_tat ON flow_rates (tat_us);

-- The runs an event did not start, and why: visible on GET /v1/events/{id}.
CREATE TABLE event_skips (
  event_id    text NOT NULL REFERENCES events (internal_id) ON DELETE CASCADE,
  function_id text NOT NULL,
  reason      text NOT NULL,  -- idempotency | rate_limit | singleton
  key         text NOT NULL,
  at_ms       bigint NOT NULL,
  PRIMARY KEY (event_id, function_id)
);

-- `singleton`: the last run admitted per (function, key); a new run of the key is admitted
-- only when that one has ended (mode skip), or after cancelling it (mode cancel).
CREATE TABLE singletons (
  function_id text NOT NULL,
  key         text NOT NULL,
  run_id      text NOT NULL,
  PRIMARY KEY (function_id, key)
);

-- `timeouts`: a run's deadlines. Deleted with the run; rows of ended runs are forgotten by
-- the sweep (RunControl::CancelTimedOutRuns).
CREATE TABLE run_timeouts (
  run_id            text PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
  start_deadline_ms bigint,  -- cancelled if not started (first claimed) by then
  finish_timeout_ms bigint   -- cancelled if not finished this long after its start
);
