#!/usr/bin/env bash
# How fast the dashboard's run list answers with 100,000 runs in the database (target:
# under 50 ms). Fills a private PostgreSQL cluster (scripts/pg.sh) with N runs of 4
# functions in mixed statuses, starts `funcky serve` on it, and times GET /v1/runs pages
# (first page, filters, a deep cursor) with curl; prints the median and p95 of each.
#   bench/list_runs.sh [BUILD_DIR] [RUNS]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$repo/build}
runs=${2:-100000}
work=$(mktemp -d /tmp/funcky-bench-list-XXXXXX)
chmod 755 "$work"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pg_port=$(free_port)
port=$(free_port)
pid=""
trap '[[ -n "$pid" ]] && kill "$pid" 2>/dev/null; "$repo/scripts/pg.sh" stop "$work/pg"; rm -rf "$work"' EXIT
url=$("$repo/scripts/pg.sh" start "$work/pg" "$pg_port")
bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
"$build/coordinator/funcky" migrate --db "$url" >/dev/null

psql() { "$bindir/psql" -q -h 127.0.0.1 -p "$pg_port" -U postgres -d funcky -v ON_ERROR_STOP=1 "$@"; }
psql <<SQL
INSERT INTO apps (id, url, sdk, framework, checksum, created_at_ms, synced_at_ms)
  VALUES ('bench', 'http://127.0.0.1:9/api', 'bench', '', 'x', 0, 0);
INSERT INTO functions (id, app_id, name, config, updated_at_ms)
  SELECT 'bench-fn' || i, 'bench', 'fn' || i, '{}'::jsonb, 0 FROM generate_series(0, 3) i;
-- Ids sort like ULIDs: time-ordered, fixed width.
INSERT INTO events (internal_id, id, name, payload, received_at_ms)
  SELECT 'E' || lpad(i::text, 25, '0'), 'e' || i, 'bench/go',
         jsonb_build_object('name', 'bench/go', 'data', jsonb_build_object('i', i)),
         1700000000000 + i * 10
  FROM generate_series(1, $runs) i;
INSERT INTO runs (id, function_id, event_id, status, lane_key, created_at_ms, started_at_ms,
                  ended_at_ms, output)
  SELECT 'R' || lpad(i::text, 25, '0'), 'bench-fn' || (i % 4), 'E' || lpad(i::text, 25, '0'),
         (ARRAY['completed','completed','completed','failed','running','queued'])[1 + i % 6],
         'tenant-' || (i % 500), 1700000000000 + i * 10, 1700000000000 + i * 10,
         CASE WHEN i % 6 < 4 THEN 1700000000000 + i * 10 + 40 END, '{"ok":true}'::jsonb
  FROM generate_series(1, $runs) i;
ANALYZE;
SQL

"$build/coordinator/funcky" serve --db "$url" --port "$port" > "$work/funcky.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done

deep=$(printf 'R%025d' $((runs / 2)))
echo "GET /v1/runs with $runs runs in PostgreSQL $("$bindir/postgres" --version | awk '{print $3}'), $(nproc) cores; 200 requests each, limit 50"
printf '%-52s %6s %10s %10s\n' "query" "rows" "median ms" "p95 ms"
for q in "" "status=failed" "function=bench-fn2" "function=bench-fn1&status=completed" \
         "key=tenant-7" "cursor=$deep" "from=2023-11-14T22:20:00Z&to=2023-11-14T22:30:00Z"; do
  rows=$(curl -s "http://127.0.0.1:$port/v1/runs?limit=50&$q" |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin)["data"]))')
  for _ in $(seq 1 200); do
    curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$port/v1/runs?limit=50&$q"
  done | sort -n | awk -v q="${q:-(first page)}" -v rows="$rows" '{ t[NR] = $1 * 1000 }
    END { printf "%-52s %6d %10.2f %10.2f\n", q, rows, t[int(NR / 2)], t[int(NR * 0.95)] }'
done
