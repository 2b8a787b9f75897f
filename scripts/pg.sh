#!/usr/bin/env bash
# A private PostgreSQL cluster on 127.0.0.1 for `make run` and tools.
#   scripts/pg.sh start DIR PORT   # initdb on first use, start, create database "funcky"
#   scripts/pg.sh stop DIR         # stop the postmaster by its PID
# Runs the server as user postgres when invoked as root (initdb refuses root).
set -euo pipefail
cmd=${1:?usage: pg.sh start DIR PORT | stop DIR}
dir=$(realpath -m "${2:?missing DIR}")
bindir=$(pg_config --bindir 2>/dev/null || true)
[[ -x "$bindir/initdb" ]] || bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_pg=()
if [[ $(id -u) -eq 0 ]]; then as_pg=(runuser -u postgres --); fi

case "$cmd" in
  start)
    port=${3:?missing PORT}
    mkdir -p "$dir"
    if [[ ${#as_pg[@]} -gt 0 ]]; then chown postgres:postgres "$dir"; chmod 700 "$dir"; fi
    if [[ ! -f "$dir/PG_VERSION" ]]; then
      "${as_pg[@]}" "$bindir/initdb" -D "$dir" -A trust -U postgres -E UTF8 >/dev/null
    fi
    "${as_pg[@]}" "$bindir/pg_ctl" -D "$dir" -l "$dir/server.log" -w start -o \
      "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir -c max_connections=200" >/dev/null
    "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -qAtc "SELECT 1 FROM pg_database WHERE datname='funcky'" | grep -q 1 ||
      "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres funcky
    echo "postgres://postgres@127.0.0.1:$port/funcky"
    ;;
  stop)
    [[ -f "$dir/postmaster.pid" ]] || exit 0
    pid=$(head -1 "$dir/postmaster.pid")
    kill -INT "$pid" 2>/dev/null || exit 0
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done
    echo "postgres $pid did not stop" >&2; exit 1
    ;;
  *) echo "usage: pg.sh start DIR PORT | stop DIR" >&2; exit 2 ;;
esac
