-- A run's keys for its function's cancel rules (see
-- migrations/postgres/0032_run_cancel_keys.sql).
CREATE TABLE run_cancel_keys (
  run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  function_id TEXT NOT NULL,
  rule        TEXT NOT NULL,
  key         TEXT,
  PRIMARY KEY (run_id, rule)
);
CREATE INDEX run_cancel_keys_match ON run_cancel_keys (function_id, rule, key, run_id);
-- The active runs made before this version: looked at by every cancel rule of their function
-- ('*', a null key), as all were before.
INSERT INTO run_cancel_keys (run_id, function_id, rule, key)
  SELECT id, function_id, '*', NULL FROM runs
  WHERE status NOT IN ('completed', 'failed', 'cancelled');
