-- Funcky schema, PostgreSQL. Times are Unix milliseconds (bigint): the coordinator's
-- injected clock decides them, so every backend and every test agrees.

CREATE TABLE apps (
  id            text PRIMARY KEY,
  url           text NOT NULL,
  sdk           text NOT NULL DEFAULT '',
  framework     text NOT NULL DEFAULT '',
  checksum      text NOT NULL,
  created_at_ms bigint NOT NULL,
  synced_at_ms  bigint NOT NULL
);

CREATE TABLE functions (
  id            text PRIMARY KEY,          -- composite id <app>-<fn>
  app_id        text NOT NULL REFERENCES apps (id),
  name          text NOT NULL,
  config        jsonb NOT NULL,            -- the FunctionConfig as synced
  archived      boolean NOT NULL DEFAULT false,
  updated_at_ms bigint NOT NULL
);
CREATE INDEX functions_app ON functions (app_id);

CREATE TABLE events (
  internal_id    text PRIMARY KEY,         -- ULID
  id             text NOT NULL UNIQUE,     -- idempotency id
  name           text NOT NULL,
  payload        jsonb NOT NULL,
  received_at_ms bigint NOT NULL
);
CREATE INDEX events_name ON events (name, internal_id DESC);

CREATE TABLE runs (
  id            text PRIMARY KEY,          -- ULID, so id order is creation order
  function_id   text NOT NULL REFERENCES functions (id),
  event_id      text NOT NULL REFERENCES events (internal_id),
  status        text NOT NULL,
  lane_key      text,
  output        jsonb,
  error         jsonb,
  req_version   int NOT NULL DEFAULT -1,
  created_at_ms bigint NOT NULL,
  started_at_ms bigint,
  ended_at_ms   bigint,
  UNIQUE (function_id, event_id)           -- one run per function per event
);
CREATE INDEX runs_function ON runs (function_id, id DESC);
CREATE INDEX runs_status ON runs (status, id DESC);
CREATE INDEX runs_event ON runs (event_id);

-- Memoized step results; (run_id, step_id) is recorded once.
CREATE TABLE steps (
  run_id        text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  step_id       text NOT NULL,
  seq           int NOT NULL,              -- position in the run's stack
  name          text NOT NULL,
  status        text NOT NULL,
  memo          jsonb,
  created_at_ms bigint NOT NULL,
  PRIMARY KEY (run_id, step_id)
);

-- Every call's outcome per step, for the timeline.
CREATE TABLE attempts (
  id            bigserial PRIMARY KEY,
  run_id        text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  step_id       text NOT NULL,
  name          text NOT NULL,
  attempt       int NOT NULL,
  outcome       text NOT NULL,
  error         jsonb,
  started_at_ms bigint NOT NULL,
  ended_at_ms   bigint NOT NULL
);
CREATE INDEX attempts_run ON attempts (run_id, id);

-- The work queue. An item is claimable when visible_at <= now: a claim moves visible_at
-- to the end of the lease, so an expired lease makes the item claimable again without a
-- sweeper, and the claim scans one index in claim order.
CREATE TABLE queue (
  id            bigserial PRIMARY KEY,
  run_id        text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  step_id       text NOT NULL,
  attempt       int NOT NULL DEFAULT 0,
  visible_at_ms bigint NOT NULL,
  lease_token   text,
  claims        int NOT NULL DEFAULT 0,
  created_at_ms bigint NOT NULL
);
CREATE INDEX queue_visible ON queue (visible_at_ms, id);
CREATE INDEX queue_run ON queue (run_id);
