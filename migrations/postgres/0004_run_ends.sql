-- The run-end outbox: a run's end is recorded in the transaction that ends it, by a trigger,
-- so no code path can end a run and forget to announce it. Coordinators announce each end
-- (inngest/function.finished, .failed, .cancelled; invokers resume from it) and then delete
-- the row; rows left by a crash or a database outage are announced by any coordinator's
-- sweep. Announcing twice is harmless: the events have ids derived from the run id.
CREATE TABLE run_ends (
  run_id      text PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
  ended_at_ms bigint NOT NULL
);
CREATE INDEX run_ends_ended ON run_ends (ended_at_ms);

CREATE FUNCTION funcky_record_run_end() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO run_ends (run_id, ended_at_ms)
  VALUES (NEW.id, coalesce(NEW.ended_at_ms, 0))
  ON CONFLICT (run_id) DO NOTHING;
  RETURN NULL;
END
$$;

CREATE TRIGGER runs_end AFTER UPDATE OF status ON runs FOR EACH ROW
  WHEN (NEW.status IN ('completed', 'failed', 'cancelled')
        AND OLD.status NOT IN ('completed', 'failed', 'cancelled'))
  EXECUTE FUNCTION funcky_record_run_end();
