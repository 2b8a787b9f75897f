-- `priority` and a second keyed concurrency limit (docs/flow-control.md "priority",
-- "concurrency"). Numbered 0011 while 0010 is another change's: the runner applies every
-- version it has not applied, in order, gaps allowed.
--
-- A run keeps its priority (seconds, -600..600) for the first call it gets when it becomes
-- its lane's head. A queue item carries the milliseconds its first call is moved ahead
-- (priority_ms >= 0; 0 for every other call): the claim takes due items in the order of
-- visible_at_ms - priority_ms, so a rewrite of visible_at_ms (a held-back item, a paced
-- start, a released lease) keeps the item's offset. queue_order serves that order the way
-- queue_visible served visible_at_ms: the claim scans only entries whose order key is due.
ALTER TABLE runs ADD COLUMN priority_s bigint NOT NULL DEFAULT 0;
ALTER TABLE queue ADD COLUMN priority_ms bigint NOT NULL DEFAULT 0;
CREATE INDEX queue_order ON queue ((visible_at_ms - priority_ms), id);

-- The second keyed limit: its value on the run, copied to each queue item (as
-- concurrency_key is) so the claim counts calls in flight without a join.
ALTER TABLE functions ADD COLUMN key_concurrency_limit2 int NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN concurrency_key2 text;
ALTER TABLE queue ADD COLUMN concurrency_key2 text;
CREATE INDEX queue_in_flight2 ON queue (function_id, concurrency_key2)
  WHERE lease_token IS NOT NULL;
