-- `throttle` (docs/flow-control.md "throttle"). Numbered 0008 while 0009 is another change's:
-- the runner applies every version it has not applied, in order, gaps allowed.
--
-- The throttle's GCRA rows live in flow_rates with gate 'throttle'. Each throttled run
-- keeps the start slot it was given at ingest: its first call is due no earlier, also when
-- it waited behind its lane's head and gets that call only later.
ALTER TABLE runs ADD COLUMN throttle_slot_ms bigint;
