-- Sequence lanes: a lane that orders its runs by the producer's number in each event
-- (ordering.sequence) rather than by acceptance. docs/ordering.md "Sequence lanes".

-- The lane's sequencing, copied from the function's config by every intake (as
-- head_timeout is); seq_gap_timeout_ms IS NOT NULL marks a sequence lane. Such a row
-- outlives its runs: seq_next (the next number expected; NULL: none seen yet and no start)
-- is the lane's stale guard. gap_since_ms: since when a run beyond seq_next has waited for
-- the missing numbers; the gap is given up at gap_since_ms + seq_gap_timeout_ms.
ALTER TABLE lanes ADD COLUMN seq_gap_timeout_ms bigint;
ALTER TABLE lanes ADD COLUMN seq_start bigint;
ALTER TABLE lanes ADD COLUMN seq_run_stale boolean NOT NULL DEFAULT false;
ALTER TABLE lanes ADD COLUMN seq_next bigint;
ALTER TABLE lanes ADD COLUMN gap_since_ms bigint;
ALTER TABLE lanes ADD COLUMN gaps_total bigint NOT NULL DEFAULT 0;
ALTER TABLE lanes ADD COLUMN stale_total bigint NOT NULL DEFAULT 0;
ALTER TABLE lanes ADD COLUMN duplicates_total bigint NOT NULL DEFAULT 0;
CREATE INDEX lanes_gap ON lanes (gap_since_ms) WHERE gap_since_ms IS NOT NULL;

-- A run's number in its sequence lane; unique, which is what tells a duplicate.
ALTER TABLE runs ADD COLUMN lane_number bigint;
CREATE UNIQUE INDEX runs_lane_number ON runs (function_id, lane_key, lane_number)
  WHERE lane_number IS NOT NULL;

-- The numbers a lane gave up on: first..last inclusive, why (gap_timeout, skip_head) and
-- the run that went on. announced: the funcky/lane.gap event is stored (an outbox, like
-- run_ends: recorded in the transaction that gives up, announced after commit).
CREATE TABLE lane_gaps (
  id              bigserial PRIMARY KEY,
  function_id     text NOT NULL,
  key             text NOT NULL,
  first_number    bigint NOT NULL,
  last_number     bigint NOT NULL,
  waited_since_ms bigint NOT NULL,
  recorded_at_ms  bigint NOT NULL,
  reason          text NOT NULL,
  resumed_run_id  text,
  announced       boolean NOT NULL DEFAULT false
);
CREATE INDEX lane_gaps_lane ON lane_gaps (function_id, key, id);
CREATE INDEX lane_gaps_pending ON lane_gaps (id) WHERE NOT announced;

-- Events of a sequence lane that started no run: stale (below the next number) or a
-- duplicate (the number has a run: run_id).
CREATE TABLE lane_outcomes (
  event_id       text NOT NULL,
  function_id    text NOT NULL,
  key            text NOT NULL,
  number         bigint NOT NULL,
  outcome        text NOT NULL,
  run_id         text,
  recorded_at_ms bigint NOT NULL
);
CREATE INDEX lane_outcomes_event ON lane_outcomes (event_id);
