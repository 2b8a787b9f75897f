-- A run's keys for its function's cancel rules (`cancel: [{event, if}]`). A rule whose `if`
-- requires a field of the cancelling event to equal a value the run's own event gives
-- (`async.data.user == event.data.user`) keys the run by that field and value
-- (expr::Expression::RequiredKey); a rule that requires none keys it with null. A cancelling
-- event reads the runs keyed by its fields' keys and those keyed with null, where it read
-- every active run of the function before. `rule` is scheduler::CancelOn::id of the entry.
-- The rows of a run are written with it; a sync that adds a rule writes a null key for each
-- active run without one; a cancelling event deletes the rows of ended runs it reads;
-- retention deletes the rest with their runs. Runs made before this version get one row, '*'
-- (below).
CREATE TABLE run_cancel_keys (
  run_id      text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  function_id text NOT NULL,
  rule        text NOT NULL,
  key         text,
  PRIMARY KEY (run_id, rule)
);
CREATE INDEX run_cancel_keys_match ON run_cancel_keys (function_id, rule, key, run_id);
-- The active runs made before this version: looked at by every cancel rule of their function
-- ('*', a null key), as all were before.
INSERT INTO run_cancel_keys (run_id, function_id, rule, key)
  SELECT id, function_id, '*', NULL FROM runs
  WHERE status NOT IN ('completed', 'failed', 'cancelled');
