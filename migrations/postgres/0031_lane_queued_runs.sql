-- The queued runs of a lane, apart from its history. Choosing a lane's next head reads the
-- key's queued runs in acceptance order (lane_seq) or, for a sequence lane, in number order;
-- through runs_lane and runs_lane_number those reads stepped over every finished run of the
-- key first (all of its history for a sequence lane, whose lane_seq never restarts; for a
-- plain lane, the earlier bursts' runs past its lane_seq, which restarts when the lane
-- empties), under the lane's lock: a tenant with 200,000 past runs paid that on every head.
-- Built in the migration's transaction: writes to runs wait while they are built (seconds
-- for millions of runs) on the first start of this version.
CREATE INDEX runs_lane_queued ON runs (function_id, lane_key, lane_seq)
  WHERE lane_key IS NOT NULL AND status = 'queued';
CREATE INDEX runs_lane_number_queued ON runs (function_id, lane_key, lane_number)
  WHERE lane_number IS NOT NULL AND status = 'queued';
