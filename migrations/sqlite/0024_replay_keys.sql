-- A replay's Idempotency-Key (see migrations/postgres/0028_replay_keys.sql).
CREATE TABLE replay_keys (
  run_id          TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  idempotency_key TEXT NOT NULL,
  replay_id       TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  PRIMARY KEY (run_id, idempotency_key)
);
CREATE INDEX replay_keys_replay ON replay_keys (replay_id);
