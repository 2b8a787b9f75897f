-- See migrations/postgres/0016_function_generation.sql: the function set's generation,
-- which a sync that changes functions moves on and an ingest checks.
CREATE TABLE function_generation (
  one INTEGER PRIMARY KEY CHECK (one = 1),
  generation INTEGER NOT NULL
);
INSERT INTO function_generation (one, generation) VALUES (1, 0);
