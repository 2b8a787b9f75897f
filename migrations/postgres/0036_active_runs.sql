-- The runs of a function that have not ended, in id order: what a cancel_on rule without a
-- condition cancels (ActiveRuns), read a page at a time. Without this index the read walked
-- the runs of the whole table in id order, the function and status a filter: a page of 1,000
-- of 10,000 active runs among 300,000 read 30,000 runs, every page of one such event the
-- whole table. An ended run leaves it with its status (no write of its own); an active run's
-- entries are one per row version, as in the table's other indexes. Building it holds back
-- writes to runs meanwhile (seconds per million runs): on a large database, apply it with
-- `funcky migrate` before the new coordinators start.
CREATE INDEX runs_active ON runs (function_id, id)
  WHERE status NOT IN ('completed', 'failed', 'cancelled');
