-- The function set's generation: a sync that changes an app's functions adds one in its
-- transaction. A coordinator matches events against the set it loaded, and its ingest
-- checks, in the ingest's transaction, that the generation is still the one it loaded the
-- set at (else it loads the set again and matches again): an event sent after a sync
-- returned, to any coordinator of the database, starts the functions that sync made.
CREATE TABLE function_generation (
  one boolean PRIMARY KEY DEFAULT true CHECK (one),
  generation bigint NOT NULL
);
INSERT INTO function_generation (one, generation) VALUES (true, 0);
