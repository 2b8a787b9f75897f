-- Whether a run ever had calls out in parallel (a plan of several steps): the end of a run
-- that never did, nor registered a wait (had_waits), has no queued call besides the one that
-- ends it, so it does not look for others to delete. Runs not ended when this version is
-- applied count as having had them.
ALTER TABLE runs ADD COLUMN had_parallel INTEGER NOT NULL DEFAULT 0;
UPDATE runs SET had_parallel = 1 WHERE status NOT IN ('completed', 'failed', 'cancelled');
