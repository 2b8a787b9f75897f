-- `throttle` (docs/flow-control.md "throttle"). Numbered 0008 while 0009 is another change's:
-- the runner applies every version it has not applied, in order, gaps allowed.
--
-- The throttle's GCRA rows live in flow_rates: gate 'throttle' paces the start slots given
-- at ingest, gate 'throttle_start' the first calls actually claimed. Each throttled run
-- keeps its slot (its first call is due no earlier, also when it waited behind its lane's
-- head and gets that call only later) and its throttle (key, interval, burst), which the
-- claim checks before its first call.
ALTER TABLE runs ADD COLUMN throttle_slot_ms bigint;
ALTER TABLE runs ADD COLUMN throttle_key text;
ALTER TABLE runs ADD COLUMN throttle_interval_us bigint;
ALTER TABLE runs ADD COLUMN throttle_burst bigint;
