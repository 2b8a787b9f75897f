-- Step kinds beyond step.run (timers, waits, invocations), cancellation and replays; see
-- migrations/postgres/0003_step_kinds.sql for what each part means.

ALTER TABLE queue ADD COLUMN resume TEXT;
CREATE INDEX queue_run_step ON queue (run_id, step_id);

CREATE TABLE waits (
  run_id        TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  step_id       TEXT NOT NULL,
  function_id   TEXT NOT NULL,
  event_name    TEXT NOT NULL,
  expression    TEXT NOT NULL DEFAULT '',
  kind          TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  expires_at_ms INTEGER NOT NULL,
  PRIMARY KEY (run_id, step_id)
);
CREATE INDEX waits_event ON waits (event_name, created_at_ms);

CREATE INDEX events_name_received ON events (name, received_at_ms);

-- A replay is another run of the same function for the same event: the table is rebuilt
-- without UNIQUE (function_id, event_id) (SQLite cannot drop a constraint). The migration
-- runner turns foreign keys off around this and checks them before it commits.
CREATE TABLE runs_new (
  id              TEXT PRIMARY KEY,
  function_id     TEXT NOT NULL REFERENCES functions (id),
  event_id        TEXT NOT NULL REFERENCES events (internal_id),
  status          TEXT NOT NULL,
  lane_key        TEXT,
  lane_seq        INTEGER,
  concurrency_key TEXT,
  output          TEXT,
  error           TEXT,
  req_version     INTEGER NOT NULL DEFAULT -1,
  created_at_ms   INTEGER NOT NULL,
  started_at_ms   INTEGER,
  ended_at_ms     INTEGER
);
INSERT INTO runs_new (id, function_id, event_id, status, lane_key, lane_seq, concurrency_key,
                      output, error, req_version, created_at_ms, started_at_ms, ended_at_ms)
  SELECT id, function_id, event_id, status, lane_key, lane_seq, concurrency_key, output, error,
         req_version, created_at_ms, started_at_ms, ended_at_ms FROM runs;
DROP TABLE runs;
ALTER TABLE runs_new RENAME TO runs;
CREATE INDEX runs_function ON runs (function_id, id DESC);
CREATE INDEX runs_status ON runs (status, id DESC);
CREATE INDEX runs_event ON runs (event_id);
CREATE INDEX runs_lane ON runs (function_id, lane_key, lane_seq) WHERE lane_key IS NOT NULL;
CREATE INDEX runs_function_event ON runs (function_id, event_id);
