-- run_cancel_keys' lookup index leads with the key (see
-- migrations/postgres/0033_cancel_keys_by_key.sql).
DROP INDEX run_cancel_keys_match;
CREATE INDEX run_cancel_keys_match ON run_cancel_keys (key, function_id, rule, run_id);
