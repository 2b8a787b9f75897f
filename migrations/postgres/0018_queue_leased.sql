-- Whether an item is leased, as a column of its own, so that the partial indexes of calls in
-- flight name it rather than lease_token. A call kept in place (ApplyAndKeep) takes a new
-- token but stays leased: its update then changes no indexed column and can be HOT (no new
-- entry in any of queue's indexes), as it can leave visible_at_ms alone while two thirds of
-- a lease remain (sql_store.cc, ApplyWork).
ALTER TABLE queue ADD COLUMN leased boolean GENERATED ALWAYS AS (lease_token IS NOT NULL) STORED;
DROP INDEX queue_in_flight;
CREATE INDEX queue_in_flight ON queue (function_id, concurrency_key) WHERE leased;
DROP INDEX queue_in_flight2;
CREATE INDEX queue_in_flight2 ON queue (function_id, concurrency_key2) WHERE leased;
-- Room on each page for an item's next version, which a HOT update needs.
ALTER TABLE queue SET (fillfactor = 70);
