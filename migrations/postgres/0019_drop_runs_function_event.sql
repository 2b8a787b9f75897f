-- No statement looks runs up by (function_id, event_id): those of an event are found by
-- runs_event (an event has a run or a few), those of a function by runs_function. Every
-- version of a run's row written outside HOT (its insert, being claimed, its end) paid for an
-- entry in it.
DROP INDEX IF EXISTS runs_function_event;
