-- An end's invoke waits are found by their `if`'s text (store::InvokeWaitExpression, which
-- names the invoked run's correlation id): each ingest read the oldest 10,000 waits named
-- inngest/function.finished and evaluated every one, so an invoker past them missed its
-- callee's end and waited out its timeout.
CREATE INDEX IF NOT EXISTS waits_invoke ON waits (expression) WHERE kind = 'invoke';
