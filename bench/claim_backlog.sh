#!/usr/bin/env bash
# Runs bench/claim_backlog on a private PostgreSQL cluster (scripts/pg.sh) and stops it.
#   bench/claim_backlog.sh [BUILD_DIR] [extra claim_backlog flags…]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$repo/build}
shift || true
work=$(mktemp -d /tmp/funcky-bench-XXXXXX)
chmod 755 "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
trap '"$repo/scripts/pg.sh" stop "$work/pg"; rm -rf "$work"' EXIT
url=$("$repo/scripts/pg.sh" start "$work/pg" "$port")
base=${url%/funcky}
bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
"$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres backlog
echo "claim_backlog on PostgreSQL $("$bindir/postgres" --version | awk '{print $3}'), $(nproc) cores"
"$build/bench/claim_backlog" --db "$url" --db-backlog "$base/backlog" "$@"
