-- Lanes (strict FIFO per key) and concurrency limits.

-- Limits on calls in flight, read from the function config at sync: 0 = unlimited.
ALTER TABLE functions ADD COLUMN concurrency_limit int NOT NULL DEFAULT 0;
ALTER TABLE functions ADD COLUMN key_concurrency_limit int NOT NULL DEFAULT 0;

-- A run's place in its lane (acceptance order) and its concurrency key.
ALTER TABLE runs ADD COLUMN lane_seq bigint;
ALTER TABLE runs ADD COLUMN concurrency_key text;
CREATE INDEX runs_lane ON runs (function_id, lane_key, lane_seq) WHERE lane_key IS NOT NULL;

-- One row per lane with runs that are not finished. Only the head run has queue items; the
-- others wait, in lane_seq order, until the head finishes. The row is the lane's lock: event
-- intake, the end of a head, skip-head and head timeouts all take it first.
CREATE TABLE lanes (
  function_id      text NOT NULL REFERENCES functions (id),
  key              text NOT NULL,
  next_seq         bigint NOT NULL DEFAULT 0,
  depth            int NOT NULL DEFAULT 0,   -- runs of the lane not finished, head included
  head_run_id      text,
  head_since_ms    bigint,
  head_timeout_ms  bigint,                   -- from ordering.head_timeout; NULL = none
  head_deadline_ms bigint,                   -- head_since_ms + head_timeout_ms
  PRIMARY KEY (function_id, key)
);
CREATE INDEX lanes_deadline ON lanes (head_deadline_ms) WHERE head_deadline_ms IS NOT NULL;

-- Denormalized from the run, so a claim counts calls in flight per function and key
-- with one index.
ALTER TABLE queue ADD COLUMN function_id text;
ALTER TABLE queue ADD COLUMN concurrency_key text;
UPDATE queue q SET function_id = r.function_id FROM runs r WHERE r.id = q.run_id;
CREATE INDEX queue_in_flight ON queue (function_id, concurrency_key) WHERE lease_token IS NOT NULL;
