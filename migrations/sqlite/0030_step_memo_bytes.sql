-- A step's memo's bytes, recorded with the step (see
-- migrations/postgres/0034_step_memo_bytes.sql).
ALTER TABLE steps ADD COLUMN memo_bytes INTEGER;
