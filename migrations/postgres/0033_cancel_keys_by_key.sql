-- run_cancel_keys' lookup index leads with the key. Led by the function and the rule, a plan
-- made before the table's statistics (a young database, or right after a burst of runs) found
-- the function's rule a few rows and read all of them, the key a filter: every active run's row
-- for each cancelling event. Led by the key, a key is always found by its own entries.
DROP INDEX run_cancel_keys_match;
CREATE INDEX run_cancel_keys_match ON run_cancel_keys (key, function_id, rule, run_id);
