-- `batchEvents` (see migrations/postgres/0010_batches.sql). Numbered 0009 while later
-- numbers are other changes': the runner applies every version not applied, gaps allowed.
CREATE TABLE batches (
  function_id TEXT NOT NULL,
  key         TEXT NOT NULL,
  run_id      TEXT NOT NULL,
  first_ms    INTEGER NOT NULL,
  size        INTEGER NOT NULL,
  bytes       INTEGER NOT NULL,
  PRIMARY KEY (function_id, key)
);

CREATE TABLE run_events (
  run_id   TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  position INTEGER NOT NULL,
  event_id TEXT NOT NULL REFERENCES events (internal_id),
  PRIMARY KEY (run_id, position)
);
CREATE INDEX run_events_event ON run_events (event_id);
