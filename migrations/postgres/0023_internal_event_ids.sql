-- The coordinator's own events get ids under the prefix "funcky:", which events sent to the
-- API may not use (a sender's id, say a run's id reused as an idempotency key, took the id of
-- that run's inngest/function.failed event, which was then dropped as its duplicate). The
-- ids stored before move there too, so that an end announced again after this migration, or
-- an invocation made again, still finds its event and stores nothing twice. Only events of
-- the coordinator's names are renamed: senders may not use those names. A stored event that
-- already holds the new id (a sender's, sent before the prefix was refused) keeps its id, and
-- the coordinator's old one stays as it is.
UPDATE events SET id = 'funcky:finished:' || substr(id, 1, length(id) - 9)
 WHERE name = 'inngest/function.finished' AND id LIKE '%-finished'
   AND NOT EXISTS (SELECT 1 FROM events o
                    WHERE o.id = 'funcky:finished:' || substr(events.id, 1, length(events.id) - 9));
UPDATE events SET id = 'funcky:cancelled:' || substr(id, 1, length(id) - 10)
 WHERE name = 'inngest/function.cancelled' AND id LIKE '%-cancelled'
   AND NOT EXISTS (SELECT 1 FROM events o
                    WHERE o.id = 'funcky:cancelled:' || substr(events.id, 1, length(events.id) - 10));
UPDATE events SET id = 'funcky:failed:' || id
 WHERE name = 'inngest/function.failed' AND id NOT LIKE 'funcky:%'
   AND NOT EXISTS (SELECT 1 FROM events o WHERE o.id = 'funcky:failed:' || events.id);
UPDATE events SET id = 'funcky:invoked:' || id
 WHERE name = 'inngest/function.invoked' AND id NOT LIKE 'funcky:%'
   AND NOT EXISTS (SELECT 1 FROM events o WHERE o.id = 'funcky:invoked:' || events.id);
