#!/usr/bin/env bash
# `make run` needs no database server: after building, it runs `make start`, which starts
# `funcky dev` (SQLite) and the hello host. This test runs `make start` with its own state
# folder and ports, sends an event, waits for the run to complete, and stops both by PID
# (`make stop`).
#   tests/make_run_test.sh BUILD_DIR
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=$(realpath "${1:?usage: make_run_test.sh BUILD_DIR}")
state=$(mktemp -d /tmp/funcky-make-run-XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
hello=$(free_port)
args=(BUILD="$build" STATE="$state" FUNCKY_PORT="$port" HELLO_PORT="$hello")
trap 'make -C "$repo" --no-print-directory stop "${args[@]}"; rm -rf "$state"' EXIT

make -C "$repo" --no-print-directory start "${args[@]}"
grep -q "store: SQLite" "$state/funcky.log" || { echo "not on SQLite:"; cat "$state/funcky.log"; exit 1; }
test -s "$state/dev.db"

# A second start over the running one is refused and leaves it running; a start whose port is
# taken fails, starting nothing.
if make -C "$repo" --no-print-directory start "${args[@]}" 2>"$state/again.err"; then
  echo "a second make start over the running one succeeded"; exit 1
fi
grep -q "already running" "$state/again.err" || { cat "$state/again.err"; exit 1; }
other=$(mktemp -d /tmp/funcky-make-run-XXXXXX)
if make -C "$repo" --no-print-directory start BUILD="$build" STATE="$other" FUNCKY_PORT="$port" \
    HELLO_PORT="$(free_port)" 2>"$other/err"; then
  make -C "$repo" --no-print-directory stop STATE="$other"; rm -rf "$other"
  echo "a make start on a taken port succeeded"; exit 1
fi
grep -q "is in use" "$other/err" || { cat "$other/err"; rm -rf "$other"; exit 1; }
test ! -e "$other/funcky.pid"
rm -rf "$other"
curl -sf "http://127.0.0.1:$port/healthz" >/dev/null

curl -sf -X POST "http://127.0.0.1:$port/e/dev" -d '{"name":"demo/hello","data":{"name":"Ada"}}'
echo
for _ in $(seq 1 100); do
  runs=$(curl -sf "http://127.0.0.1:$port/v1/runs")
  status=$(python3 -c 'import json,sys; d=json.load(sys.stdin)["data"]; print(d[0]["status"] if d else "")' <<<"$runs")
  [[ "$status" == completed || "$status" == failed ]] && break
  sleep 0.1
done
python3 - "$runs" <<'PY'
import json, sys
runs = json.loads(sys.argv[1])["data"]
assert len(runs) == 1, runs
run = runs[0]
assert run["status"] == "completed", run
assert run["output"] == {"greeting": "Hello, Ada", "shout": "HELLO, ADA!"}, run["output"]
print("make run: a run completed on funcky dev (SQLite):", run["id"])
PY
