-- The runs of a function that have not ended, in id order (see
-- migrations/postgres/0036_active_runs.sql).
CREATE INDEX runs_active ON runs (function_id, id)
  WHERE status NOT IN ('completed', 'failed', 'cancelled');
