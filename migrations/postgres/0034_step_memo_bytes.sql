-- A step's memo's bytes, as the coordinator wrote it (its compact JSON), recorded with the
-- step: the bound on a run's steps (store::kMaxLoadedStepBytes) sums these instead of turning
-- every memo of the run into text again at each checkpoint and each load. Steps recorded
-- before this version have none and are measured as before (octet_length(memo::text)). Adding
-- a column without a default rewrites nothing.
ALTER TABLE steps ADD COLUMN memo_bytes bigint;
