#!/usr/bin/env bash
# Runs one of the store's own benchmarks on a private PostgreSQL cluster (scripts/pg.sh) and
# stops the cluster by its PID, whatever happens.
#   bench/store_bench.sh claim_backlog|apply_latency|cancel_on [BUILD_DIR] [extra flags of the program…]
set -euo pipefail
program=${1:-}
case $program in
  claim_backlog | apply_latency | cancel_on) ;;
  *)
    echo "usage: $0 claim_backlog|apply_latency|cancel_on [BUILD_DIR] [flags…]" >&2
    exit 2
    ;;
esac
shift
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$repo/build}
shift || true
work=$(mktemp -d /tmp/funcky-bench-XXXXXX)
chmod 755 "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
trap '"$repo/scripts/pg.sh" stop "$work/pg"; rm -rf "$work"' EXIT
url=$("$repo/scripts/pg.sh" start "$work/pg" "$port")
bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
args=(--db "$url")
if [ "$program" = claim_backlog ]; then
  "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres backlog
  args+=(--db-backlog "${url%/funcky}/backlog")
fi
echo "$program on PostgreSQL $("$bindir/postgres" --version | awk '{print $3}'), $(nproc) cores"
"$build/bench/$program" "${args[@]}" "$@"
