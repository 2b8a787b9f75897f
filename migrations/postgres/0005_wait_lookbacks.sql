-- The wait look-back outbox. A wait registered with a look-back (and every wait: an event
-- received while the wait's transaction was in flight saw no wait) must also be matched
-- against the events received since lookback_from_ms. The transaction that stores the wait
-- sets it; the coordinator clears it once the look-back is done, and any coordinator redoes
-- the look-back of a wait whose column is still set a little later (a crash in between).
ALTER TABLE waits ADD COLUMN lookback_from_ms bigint;
CREATE INDEX waits_lookback ON waits (created_at_ms) WHERE lookback_from_ms IS NOT NULL;
