-- An event wait's equality key (see migrations/postgres/0029_wait_match_keys.sql).
ALTER TABLE waits ADD COLUMN match_key TEXT;
CREATE INDEX waits_match ON waits (event_name, match_key) WHERE match_key IS NOT NULL;
CREATE INDEX waits_unkeyed ON waits (event_name, created_at_ms)
  WHERE kind <> 'invoke' AND match_key IS NULL;
