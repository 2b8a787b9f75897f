-- `debounce` (docs/flow-control.md "debounce"). Numbered 0009 while 0008 is another
-- change's: the runner applies every version it has not applied, in order, gaps allowed.
--
-- One row per (function, key): the pending run (queued, its first call not claimed yet) that
-- the next event of the key joins, when its debounce began (first_ms, for `timeout`) and the
-- `ts` of the event it holds. A row whose run was claimed or ended holds nothing: the next
-- event starts a new debounce, and retention deletes it.
CREATE TABLE debounces (
  function_id text NOT NULL,
  key         text NOT NULL,
  run_id      text NOT NULL,  -- '' while no run was created for it
  first_ms    bigint NOT NULL,
  event_ts_ms bigint NOT NULL,
  PRIMARY KEY (function_id, key)
);
