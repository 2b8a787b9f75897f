-- Funcky schema, SQLite (the zero-set-up store of `funcky dev`). The same tables and meaning
-- as migrations/postgres; JSON is stored as text, times as Unix milliseconds. Every write
-- runs in one BEGIN IMMEDIATE transaction at a time, which is what the row locks of the
-- PostgreSQL store provide there.

CREATE TABLE apps (
  id            TEXT PRIMARY KEY,
  url           TEXT NOT NULL,
  sdk           TEXT NOT NULL DEFAULT '',
  framework     TEXT NOT NULL DEFAULT '',
  checksum      TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  synced_at_ms  INTEGER NOT NULL
);

CREATE TABLE functions (
  id                    TEXT PRIMARY KEY,
  app_id                TEXT NOT NULL REFERENCES apps (id),
  name                  TEXT NOT NULL,
  config                TEXT NOT NULL,
  archived              INTEGER NOT NULL DEFAULT 0,
  updated_at_ms         INTEGER NOT NULL,
  concurrency_limit     INTEGER NOT NULL DEFAULT 0,
  key_concurrency_limit INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX functions_app ON functions (app_id);

CREATE TABLE events (
  internal_id    TEXT PRIMARY KEY,
  id             TEXT NOT NULL UNIQUE,
  name           TEXT NOT NULL,
  payload        TEXT NOT NULL,
  received_at_ms INTEGER NOT NULL
);
CREATE INDEX events_name ON events (name, internal_id DESC);

CREATE TABLE runs (
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
  ended_at_ms     INTEGER,
  UNIQUE (function_id, event_id)
);
CREATE INDEX runs_function ON runs (function_id, id DESC);
CREATE INDEX runs_status ON runs (status, id DESC);
CREATE INDEX runs_event ON runs (event_id);
CREATE INDEX runs_lane ON runs (function_id, lane_key, lane_seq) WHERE lane_key IS NOT NULL;

CREATE TABLE steps (
  run_id        TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  step_id       TEXT NOT NULL,
  seq           INTEGER NOT NULL,
  name          TEXT NOT NULL,
  status        TEXT NOT NULL,
  memo          TEXT,
  created_at_ms INTEGER NOT NULL,
  PRIMARY KEY (run_id, step_id)
);

CREATE TABLE attempts (
  id            INTEGER PRIMARY KEY AUTOINCREMENT,
  run_id        TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  step_id       TEXT NOT NULL,
  name          TEXT NOT NULL,
  attempt       INTEGER NOT NULL,
  outcome       TEXT NOT NULL,
  error         TEXT,
  started_at_ms INTEGER NOT NULL,
  ended_at_ms   INTEGER NOT NULL
);
CREATE INDEX attempts_run ON attempts (run_id, id);

CREATE TABLE lanes (
  function_id      TEXT NOT NULL REFERENCES functions (id),
  key              TEXT NOT NULL,
  next_seq         INTEGER NOT NULL DEFAULT 0,
  depth            INTEGER NOT NULL DEFAULT 0,
  head_run_id      TEXT,
  head_since_ms    INTEGER,
  head_timeout_ms  INTEGER,
  head_deadline_ms INTEGER,
  PRIMARY KEY (function_id, key)
);
CREATE INDEX lanes_deadline ON lanes (head_deadline_ms) WHERE head_deadline_ms IS NOT NULL;

CREATE TABLE queue (
  id              INTEGER PRIMARY KEY AUTOINCREMENT,
  run_id          TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  step_id         TEXT NOT NULL,
  attempt         INTEGER NOT NULL DEFAULT 0,
  visible_at_ms   INTEGER NOT NULL,
  lease_token     TEXT,
  claims          INTEGER NOT NULL DEFAULT 0,
  created_at_ms   INTEGER NOT NULL,
  function_id     TEXT,
  concurrency_key TEXT
);
CREATE INDEX queue_visible ON queue (visible_at_ms, id);
CREATE INDEX queue_run ON queue (run_id);
CREATE INDEX queue_in_flight ON queue (function_id, concurrency_key) WHERE lease_token IS NOT NULL;
