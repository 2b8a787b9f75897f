-- Whether a run ever registered a wait (step.waitForEvent, step.invoke): the end of a run
-- that never did (most runs) does not look for waits to delete. Runs not ended when this
-- version is applied count as having registered one.
ALTER TABLE runs ADD COLUMN had_waits boolean NOT NULL DEFAULT false;
UPDATE runs SET had_waits = true WHERE status NOT IN ('completed', 'failed', 'cancelled');
