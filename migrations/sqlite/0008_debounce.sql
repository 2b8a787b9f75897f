-- `debounce` (see migrations/postgres/0009_debounce.sql). Numbered 0008 while 0007 is another
-- change's: the runner applies every version not applied, gaps allowed.
CREATE TABLE debounces (
  function_id TEXT NOT NULL,
  key         TEXT NOT NULL,
  run_id      TEXT NOT NULL,
  first_ms    INTEGER NOT NULL,
  event_ts_ms INTEGER NOT NULL,
  PRIMARY KEY (function_id, key)
);
