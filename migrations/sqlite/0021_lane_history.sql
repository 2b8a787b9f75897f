-- Retention's lane history by index (see migrations/postgres/0025_lane_history.sql): the
-- outcomes of the events it deleted before go here, once. The index's condition is spelled as
-- retention's query spells it ("announced", not "announced = 1"): SQLite uses a partial index
-- only for a query whose WHERE has the index's terms as they are.
DELETE FROM lane_outcomes
 WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.internal_id = lane_outcomes.event_id);
CREATE INDEX IF NOT EXISTS lane_gaps_announced ON lane_gaps (recorded_at_ms) WHERE announced;
