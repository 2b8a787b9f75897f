-- A run whose end events (inngest/function.finished, …) were stored in the transaction that
-- ended it has nothing left to announce: its end is not recorded in run_ends. The executor's
-- final transition stores them so when nothing acts on them (no function they start or
-- cancel, no invoking run, no wait for one); every other end goes through the outbox as
-- before.
ALTER TABLE runs ADD COLUMN end_events_stored boolean NOT NULL DEFAULT false;

DROP TRIGGER runs_end ON runs;
CREATE TRIGGER runs_end AFTER UPDATE OF status ON runs FOR EACH ROW
  WHEN (NEW.status IN ('completed', 'failed', 'cancelled')
        AND OLD.status NOT IN ('completed', 'failed', 'cancelled')
        AND NOT NEW.end_events_stored)
  EXECUTE FUNCTION funcky_record_run_end();
