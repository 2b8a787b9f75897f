-- A lane's queued runs apart from its history (see migrations/postgres/0031_lane_queued_runs.sql).
CREATE INDEX runs_lane_queued ON runs (function_id, lane_key, lane_seq)
  WHERE lane_key IS NOT NULL AND status = 'queued';
CREATE INDEX runs_lane_number_queued ON runs (function_id, lane_key, lane_number)
  WHERE lane_number IS NOT NULL AND status = 'queued';
