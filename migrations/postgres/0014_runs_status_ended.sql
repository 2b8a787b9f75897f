-- runs_status serves lists of runs by status (the dashboard's filter, retention), which look
-- for runs that have come to rest. A run is queued and running only briefly, and each change
-- of status added an entry to this index that stayed until vacuum: the planner, counting few
-- queued runs, read a claim's runs through every queued entry ever made (`id = ANY (…) AND
-- status = 'queued'`) instead of looking its ids up. Queued and running runs are no longer in
-- it; lists of those read runs by id, newest first, where they are.
-- Building it takes a lock that holds back writes to runs while it builds (seconds per
-- million runs): on a large database, apply it with `funcky migrate` before the new
-- coordinators start.
DROP INDEX runs_status;
CREATE INDEX runs_status ON runs (status, id DESC) WHERE status NOT IN ('queued', 'running');
