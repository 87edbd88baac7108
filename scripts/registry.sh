#!/usr/bin/env bash
# Start a throwaway container registry (Debian's docker-registry, the CNCF
# distribution registry) on a free loopback port and print its address.
#
#   export ESCROW_TEST_REGISTRY=$(scripts/registry.sh)     # e.g. 127.0.0.1:40123
#
# Idempotent: a registry this script already started in the same folder is
# reused.  Its config is its own (filesystem storage in the folder, deletes
# enabled, no auth, plain HTTP on 127.0.0.1 only, which Docker Engine treats as
# an insecure registry by default).  `scripts/registry.sh stop` stops it and
# removes the folder.
#
# Environment: ESCROW_REGISTRY_DIR (default /tmp/escrow-registry),
#              ESCROW_REGISTRY_HTPASSWD (an htpasswd file: require basic auth).
set -euo pipefail

dir="${ESCROW_REGISTRY_DIR:-/tmp/escrow-registry}"
bin=/usr/bin/docker-registry

log() { echo "registry.sh: $*" >&2; }

running() {
    [ -f "$dir/pid" ] && [ -f "$dir/addr" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null
}

if [ "${1:-}" = "stop" ]; then
    if running; then
        kill "$(cat "$dir/pid")" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$(cat "$dir/pid")" 2>/dev/null || break
            sleep 0.1
        done
    fi
    rm -rf "$dir"
    exit 0
fi

if running; then
    cat "$dir/addr"
    exit 0
fi

if [ ! -x "$bin" ]; then
    if [ "$(id -u)" != 0 ]; then
        log "Debian's docker-registry is not installed; run as root or: apt-get install docker-registry"
        exit 3
    fi
    log "installing Debian's docker-registry…"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 && apt-get install -y -qq docker-registry >&2
fi

mkdir -p "$dir/storage"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
auth=""
if [ -n "${ESCROW_REGISTRY_HTPASSWD:-}" ]; then
    auth="auth:
  htpasswd:
    realm: escrow-test
    path: ${ESCROW_REGISTRY_HTPASSWD}"
fi
cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
  secret: escrow-test-registry
$auth
EOF

# setsid: the registry outlives this script (and the test command's shell)
setsid "$bin" serve "$dir/config.yml" >"$dir/registry.log" 2>&1 </dev/null &
echo $! >"$dir/pid"
for _ in $(seq 100); do
    code="$(python3 - "$port" <<'PY' 2>/dev/null || true
import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/v2/", timeout=1).status)
except urllib.error.HTTPError as e:
    print(e.code)
PY
)"
    if [ "$code" = 200 ] || [ "$code" = 401 ]; then
        echo "127.0.0.1:$port" >"$dir/addr"
        cat "$dir/addr"
        exit 0
    fi
    if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
        break
    fi
    sleep 0.1
done
log "the registry did not start; its log:"
cat "$dir/registry.log" >&2
exit 3
