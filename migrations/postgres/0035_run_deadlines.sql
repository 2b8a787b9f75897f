-- funcky: breaks earlier versions
-- `timeouts`: a run's next deadline moves into its own row, so that finding the runs past one
-- is a probe of an index of the active runs that have a deadline, not a join of every
-- run_timeouts row with its run at each sweep tick of every coordinator (15-28 ms a tick
-- beside 10,000 running runs with `timeouts.finish` among 300,000).
--   timeout_at_ms:     cancelled if not started (first claimed) by then, until it starts;
--                      then cancelled if not ended by then (its start + finish_timeout_ms);
--                      empty when no deadline applies
--   finish_timeout_ms: `timeouts.finish`, the claim's start of the run sets timeout_at_ms
--                      from it
-- An ended run leaves the index (its predicate) without a write of its own. Adding columns
-- without a default rewrites nothing, but takes a lock that holds back reads and writes of
-- runs until the migrations commit, and building the index reads every run (seconds per
-- million runs): on a large database, apply it with `funcky migrate` before the new
-- coordinators start. Stop coordinators of an earlier version first: one still running fails
-- its sweeps and the ingests of functions with `timeouts` (its table is gone), and a run it
-- starts keeps its spent start deadline (its claim does not set the finish one), so a sweep
-- cancels it as not finished in time.
ALTER TABLE runs ADD COLUMN timeout_at_ms bigint, ADD COLUMN finish_timeout_ms bigint;
UPDATE runs r SET finish_timeout_ms = t.finish_timeout_ms,
  timeout_at_ms = CASE WHEN r.started_at_ms IS NULL THEN t.start_deadline_ms
                       ELSE r.started_at_ms + t.finish_timeout_ms END
  FROM run_timeouts t
  WHERE t.run_id = r.id AND r.status NOT IN ('completed', 'failed', 'cancelled');
DROP TABLE run_timeouts;
CREATE INDEX runs_timeout ON runs (timeout_at_ms)
  WHERE timeout_at_ms IS NOT NULL AND status NOT IN ('completed', 'failed', 'cancelled');
