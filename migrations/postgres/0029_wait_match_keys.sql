-- An event wait whose `if` requires a field of the event to equal a value known when the wait
-- is registered (`event.data.id == async.data.id`, `async.data.kind == "paid"`) keeps the key
-- of that field and value (expr::Expression::RequiredKey). An ingest finds such waits by the
-- keys of its events' fields, however many waits of the name are open, and reads the oldest
-- 10,000 of the others as before. Waits registered before this version have no key.
ALTER TABLE waits ADD COLUMN match_key text;
CREATE INDEX waits_match ON waits (event_name, match_key) WHERE match_key IS NOT NULL;
CREATE INDEX waits_unkeyed ON waits (event_name, created_at_ms)
  WHERE kind <> 'invoke' AND match_key IS NULL;
