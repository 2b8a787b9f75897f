-- Whether an item is leased, as a column of its own, so that the partial indexes of calls in
-- flight name it rather than lease_token (as in PostgreSQL's 0018, where that lets a kept
-- call's update be HOT; the statements are the same in both).
ALTER TABLE queue ADD COLUMN leased INTEGER GENERATED ALWAYS AS (lease_token IS NOT NULL) VIRTUAL;
DROP INDEX queue_in_flight;
CREATE INDEX queue_in_flight ON queue (function_id, concurrency_key) WHERE leased;
DROP INDEX queue_in_flight2;
CREATE INDEX queue_in_flight2 ON queue (function_id, concurrency_key2) WHERE leased;
