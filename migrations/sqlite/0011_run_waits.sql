-- Whether a run ever registered a wait (step.waitForEvent, step.invoke): the end of a run
-- that never did (most runs) does not look for waits to delete. Runs not ended when this
-- version is applied count as having registered one.
ALTER TABLE runs ADD COLUMN had_waits INTEGER NOT NULL DEFAULT 0;
UPDATE runs SET had_waits = 1 WHERE status NOT IN ('completed', 'failed', 'cancelled');
