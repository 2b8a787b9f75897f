-- A replay asked with an Idempotency-Key (POST /v1/runs/{id}/replay): the run it started,
-- so that the request made again (its answer lost) answers with that run instead of
-- starting another. Each row goes with either run (retention).
CREATE TABLE replay_keys (
  run_id          text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  idempotency_key text NOT NULL,
  replay_id       text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  PRIMARY KEY (run_id, idempotency_key)
);
CREATE INDEX replay_keys_replay ON replay_keys (replay_id);
