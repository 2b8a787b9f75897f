-- Flow control at admission (see migrations/postgres/0007_flow_control.sql). Numbered 0006
-- while 0005 is another change's: the runner applies every version not applied, gaps allowed.
CREATE TABLE flow_rates (
  function_id TEXT NOT NULL,
  gate        TEXT NOT NULL,
  key         TEXT NOT NULL,
  tat_us      INTEGER NOT NULL,
  PRIMARY KEY (function_id, gate, key)
);
CREATE INDEX flow_rates_tat ON flow_rates (tat_us);

CREATE TABLE event_skips (
  event_id    TEXT NOT NULL REFERENCES events (internal_id) ON DELETE CASCADE,
  function_id TEXT NOT NULL,
  reason      TEXT NOT NULL,
  key         TEXT NOT NULL,
  at_ms       INTEGER NOT NULL,
  PRIMARY KEY (event_id, function_id)
);

CREATE TABLE singletons (
  function_id TEXT NOT NULL,
  key         TEXT NOT NULL,
  run_id      TEXT NOT NULL,
  PRIMARY KEY (function_id, key)
);

-- `timeouts`: a run's deadlines. Deleted with the run; rows of ended runs are forgotten by
-- the sweep (RunControl::CancelTimedOutRuns).
CREATE TABLE run_timeouts (
  run_id            TEXT PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
  start_deadline_ms INTEGER,  -- cancelled if not started (first claimed) by then
  finish_timeout_ms INTEGER   -- cancelled if not finished this long after its start
);
