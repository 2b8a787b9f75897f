-- Sequence lanes (see migrations/postgres/0006_sequence_lanes.sql).
ALTER TABLE lanes ADD COLUMN seq_gap_timeout_ms INTEGER;
ALTER TABLE lanes ADD COLUMN seq_start INTEGER;
ALTER TABLE lanes ADD COLUMN seq_run_stale INTEGER NOT NULL DEFAULT 0;
ALTER TABLE lanes ADD COLUMN seq_next INTEGER;
ALTER TABLE lanes ADD COLUMN gap_since_ms INTEGER;
ALTER TABLE lanes ADD COLUMN gaps_total INTEGER NOT NULL DEFAULT 0;
ALTER TABLE lanes ADD COLUMN stale_total INTEGER NOT NULL DEFAULT 0;
ALTER TABLE lanes ADD COLUMN duplicates_total INTEGER NOT NULL DEFAULT 0;
CREATE INDEX lanes_gap ON lanes (gap_since_ms) WHERE gap_since_ms IS NOT NULL;

ALTER TABLE runs ADD COLUMN lane_number INTEGER;
CREATE UNIQUE INDEX runs_lane_number ON runs (function_id, lane_key, lane_number)
  WHERE lane_number IS NOT NULL;

CREATE TABLE lane_gaps (
  id              INTEGER PRIMARY KEY AUTOINCREMENT,
  function_id     TEXT NOT NULL,
  key             TEXT NOT NULL,
  first_number    INTEGER NOT NULL,
  last_number     INTEGER NOT NULL,
  waited_since_ms INTEGER NOT NULL,
  recorded_at_ms  INTEGER NOT NULL,
  reason          TEXT NOT NULL,
  resumed_run_id  TEXT,
  announced       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX lane_gaps_lane ON lane_gaps (function_id, key, id);
CREATE INDEX lane_gaps_pending ON lane_gaps (id) WHERE announced = 0;

CREATE TABLE lane_outcomes (
  event_id       TEXT NOT NULL,
  function_id    TEXT NOT NULL,
  key            TEXT NOT NULL,
  number         INTEGER NOT NULL,
  outcome        TEXT NOT NULL,
  run_id         TEXT,
  recorded_at_ms INTEGER NOT NULL
);
CREATE INDEX lane_outcomes_event ON lane_outcomes (event_id);
