-- See migrations/postgres/0015_end_events_stored.sql: a run whose end events were stored
-- with its end is not recorded in the run-end outbox.
ALTER TABLE runs ADD COLUMN end_events_stored INTEGER NOT NULL DEFAULT 0;

DROP TRIGGER runs_end;
CREATE TRIGGER runs_end AFTER UPDATE OF status ON runs
  WHEN NEW.status IN ('completed', 'failed', 'cancelled')
       AND OLD.status NOT IN ('completed', 'failed', 'cancelled')
       AND NOT NEW.end_events_stored
BEGIN
  INSERT OR IGNORE INTO run_ends (run_id, ended_at_ms)
  VALUES (NEW.id, coalesce(NEW.ended_at_ms, 0));
END;
