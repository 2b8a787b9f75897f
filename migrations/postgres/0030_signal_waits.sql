-- step.waitForSignal: a run waits for a signal sent by name (POST /v1/signals), not for an
-- event. Such a wait has no event name ('', which no event has: intake refuses it) and holds
-- its signal here; at most one open wait holds a signal (a later wait with onConflict
-- "replace" takes it, and the earlier one waits on, unreachable, until its timeout).
ALTER TABLE waits ADD COLUMN signal text;
CREATE UNIQUE INDEX waits_signal ON waits (signal) WHERE signal IS NOT NULL;
