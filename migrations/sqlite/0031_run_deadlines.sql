-- funcky: breaks earlier versions
-- `timeouts`: a run's next deadline in its own row, found by an index of the active runs that
-- have one (see migrations/postgres/0035_run_deadlines.sql).
ALTER TABLE runs ADD COLUMN timeout_at_ms INTEGER;
ALTER TABLE runs ADD COLUMN finish_timeout_ms INTEGER;
UPDATE runs SET
  finish_timeout_ms = (SELECT t.finish_timeout_ms FROM run_timeouts t WHERE t.run_id = runs.id),
  timeout_at_ms = (SELECT CASE WHEN runs.started_at_ms IS NULL THEN t.start_deadline_ms
                               ELSE runs.started_at_ms + t.finish_timeout_ms END
                   FROM run_timeouts t WHERE t.run_id = runs.id)
  WHERE id IN (SELECT run_id FROM run_timeouts)
    AND status NOT IN ('completed', 'failed', 'cancelled');
DROP TABLE run_timeouts;
CREATE INDEX runs_timeout ON runs (timeout_at_ms)
  WHERE timeout_at_ms IS NOT NULL AND status NOT IN ('completed', 'failed', 'cancelled');
