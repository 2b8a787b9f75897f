-- Retention deletes a lane outcome with its event, by the event's id (lane_outcomes_event), and
-- an announced lane gap recorded before its horizon by the index below; each pass read every
-- old outcome, to find those whose event was gone, and every announced gap. The outcomes of
-- the events it deleted before go here, once. IF NOT EXISTS: run again (as a test does), this
-- deletes what is orphaned then and changes nothing else.
DELETE FROM lane_outcomes
 WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.internal_id = lane_outcomes.event_id);
CREATE INDEX IF NOT EXISTS lane_gaps_announced ON lane_gaps (recorded_at_ms) WHERE announced;
