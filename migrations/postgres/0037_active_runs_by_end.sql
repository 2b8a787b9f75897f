-- runs_active holds the runs that have not ended by `ended_at_ms IS NULL` (set by each end,
-- with its status; never cleared), where 0036 said `status NOT IN ('completed', 'failed',
-- 'cancelled')`. Every lookup of a run by id that tests a status an active run has (a claim's
-- `status = 'queued'`, a step's or end's `status NOT IN (…, 'blocked')`) implied that
-- predicate, so the planner could use the index for it, its second column a filter: after an
-- idle spell (every run ended, then ANALYZE) it counted the index empty and chose it over the
-- primary key, and read every active run at each such lookup (3.2 ms a claim beside 20,000
-- queued runs, 0.6 ms a step). No lookup by id tests ended_at_ms. The same rows, so
-- ActiveRuns reads the same pages. The DROP locks runs against reads and writes until the
-- migrations commit, through the build (seconds per million runs): on a large database, apply
-- it with `funcky migrate` before the new coordinators start. Earlier versions run beside it
-- (they name no index), but their reads of a function's active runs no longer match the index
-- and read runs by primary key.
DROP INDEX runs_active;
CREATE INDEX runs_active ON runs (function_id, id) WHERE ended_at_ms IS NULL;
