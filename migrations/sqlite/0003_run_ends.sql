-- The run-end outbox (see migrations/postgres/0004_run_ends.sql): the trigger records a
-- run's end in the transaction that ends it; coordinators announce it and delete the row.
CREATE TABLE run_ends (
  run_id      TEXT PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
  ended_at_ms INTEGER NOT NULL
);
CREATE INDEX run_ends_ended ON run_ends (ended_at_ms);

CREATE TRIGGER runs_end AFTER UPDATE OF status ON runs
  WHEN NEW.status IN ('completed', 'failed', 'cancelled')
       AND OLD.status NOT IN ('completed', 'failed', 'cancelled')
BEGIN
  INSERT OR IGNORE INTO run_ends (run_id, ended_at_ms)
  VALUES (NEW.id, coalesce(NEW.ended_at_ms, 0));
END;
