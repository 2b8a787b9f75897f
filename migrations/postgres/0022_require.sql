-- Raises FK001 unless `met`: a query the store required rows of (sql::Tx::Require) returned
-- too few. The store sends a transaction's statements and its commit at once behind such a
-- query (sql::Flights::kOne), and the server, not the coordinator, stops the transaction when
-- the query's gate did not match. Nothing is written then; the store runs the transaction
-- again the usual way.
CREATE OR REPLACE FUNCTION funcky_require(met boolean) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
  IF NOT met THEN
    RAISE EXCEPTION 'funcky: a required row was not found (the store retries the usual way)'
      USING ERRCODE = 'FK001';
  END IF;
  RETURN true;
END
$$;
