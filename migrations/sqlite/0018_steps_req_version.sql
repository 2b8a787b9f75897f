-- The request version a host's reply named, kept with the steps that reply recorded (as in
-- the PostgreSQL migration 0021): a run's first step no longer updates the run's row for it.
ALTER TABLE steps ADD COLUMN req_version INTEGER;
