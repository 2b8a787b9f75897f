-- The queue empties often, and an ANALYZE that finds it empty leaves statistics that count no
-- row in its pages; the plans that statements are prepared with next stay until the next
-- ANALYZE, up to a minute or more into a burst of work. With no row counted, every index that
-- holds `id` costs the planner the same for a lookup of an item by id, and it took
-- queue_order, read whole for each lookup (for a kept call, an end, a retry). The two indexes
-- in claim order now break ties by `id + 0` (the claims order by that: the same values in the
-- same order), which a lookup by id cannot use: it has the primary key alone.
-- The indexes are built again, holding back writes to the queue while they build: on a large
-- queue, apply this with `funcky migrate` before the new coordinators start (older
-- coordinators' claims would sort their ties).
DROP INDEX queue_order;
CREATE INDEX queue_order ON queue ((visible_at_ms - priority_ms), (id + 0));
DROP INDEX queue_visible;
CREATE INDEX queue_visible ON queue (visible_at_ms, (id + 0));
