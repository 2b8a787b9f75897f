-- runs_active holds the runs that have not ended by `ended_at_ms IS NULL` (see
-- migrations/postgres/0037_active_runs_by_end.sql).
DROP INDEX runs_active;
CREATE INDEX runs_active ON runs (function_id, id) WHERE ended_at_ms IS NULL;
