-- The request version a host's reply named, kept with the steps that reply recorded. A run's
-- first reply names its version (the run's row holds -1 until then); writing it with the
-- step spares the run's row an update (a new version of it) on every run's first step.
-- Reads take the run's own version when set, else the one its steps hold; a run's end writes
-- its version to its row.
ALTER TABLE steps ADD COLUMN req_version int;
