-- The gaps not announced yet, as the sweep's look for work and its read spell the condition
-- ("NOT announced"): SQLite uses a partial index only when the query's condition has its
-- WHERE's terms as written (see 0021), and 0005's "announced = 0" was not, so both read every
-- gap kept for retention.
DROP INDEX lane_gaps_pending;
CREATE INDEX lane_gaps_pending ON lane_gaps (id) WHERE NOT announced;
