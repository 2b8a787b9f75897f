-- `batchEvents` (docs/flow-control.md "batchEvents"). Numbered 0010 while later numbers are
-- other changes': the runner applies every version it has not applied, in order, gaps allowed.
--
-- One row per (function, key): the open batch, i.e. the pending run (queued, its first call
-- not claimed yet) that the next event of the key joins, when its first event arrived
-- (first_ms: the batch closes at first_ms + timeout), how many events it holds and their
-- size as JSON (bytes: a batch is started before it passes 10 MiB). A row
-- whose run was claimed, filled or timed out holds nothing: the next event opens a new
-- batch, and retention deletes it.
CREATE TABLE batches (
  function_id text NOT NULL,
  key         text NOT NULL,
  run_id      text NOT NULL,  -- '' while no batch is open
  first_ms    bigint NOT NULL,
  size        integer NOT NULL,
  bytes       bigint NOT NULL,
  PRIMARY KEY (function_id, key)
);

-- The events of a batch's run, in arrival order (position 0 is runs.event_id). A run
-- without rows here has the one event runs.event_id.
CREATE TABLE run_events (
  run_id   text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  position integer NOT NULL,
  event_id text NOT NULL REFERENCES events (internal_id),
  PRIMARY KEY (run_id, position)
);
CREATE INDEX run_events_event ON run_events (event_id);
