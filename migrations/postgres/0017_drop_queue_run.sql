-- queue_run (run_id) is the leading column of queue_run_step (run_id, step_id), which serves
-- every lookup of a run's items as well; each queue row written (a kept call's update, which
-- changes indexed columns, a claim, an insert) paid for an entry in both.
DROP INDEX IF EXISTS queue_run;
