#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster for the ledger tests and print its URL.
#
#   export ESCROW_TEST_PG_URL=$(scripts/pg.sh)
#
# Idempotent: a cluster already running on the port is reused.  Debian's
# postgresql package is installed when missing (needs root).  The cluster lives
# in a temporary folder, listens on 127.0.0.1 only, trusts local connections and
# runs as the `postgres` user, with fsync off (a crash of the test machine may lose
# it; the ledger's crash tests kill the client, not the server).
# `scripts/pg.sh stop` stops it and removes it.
#
# Environment: ESCROW_PG_PORT (default 54329), ESCROW_PG_DIR (default /tmp/escrow-pg-$PORT).
set -euo pipefail

port="${ESCROW_PG_PORT:-54329}"
dir="${ESCROW_PG_DIR:-/tmp/escrow-pg-$port}"
data="$dir/data"

log() { echo "pg.sh: $*" >&2; }

find_bin() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

bin="$(find_bin)"
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    if [ "$(id -u)" != 0 ]; then
        log "PostgreSQL is not installed; run as root or: apt-get install postgresql"
        exit 3
    fi
    log "installing Debian's postgresql…"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 && apt-get install -y -qq postgresql >&2
    bin="$(find_bin)"
fi

as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

if [ "${1:-}" = "stop" ]; then
    if [ -f "$data/PG_VERSION" ]; then
        as_pg "$bin/pg_ctl" -D "$data" -m immediate stop >&2 || true
    fi
    rm -rf "$dir"
    exit 0
fi

mkdir -p "$dir"
if [ "$(id -u)" = 0 ]; then
    chown postgres: "$dir"
fi
if [ ! -f "$data/PG_VERSION" ]; then
    as_pg "$bin/initdb" -D "$data" -U postgres -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        exit 3
    }
fi
if ! as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_pg "$bin/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" start >&2 || {
        cat "$dir/server.log" >&2
        exit 3
    }
fi
echo "postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
