#!/usr/bin/env bash
# The main job, from a fresh clone: set up, build the example as phoenix builds,
# record them, verify, and write a signed PDF audit pack.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"

OUT="${ESCROW_EXAMPLE_OUT:-$ROOT/out}"
# before any build: a user who may not write there (a clone root made) learns it at once,
# not once everything is built and recorded
if ! mkdir -p "$OUT" 2>/dev/null || [[ ! -w "$OUT" || ! -x "$OUT" ]]; then
  printf '[example] %s\n' "cannot write the audit pack in $OUT (not a folder $(id -un) may write): set ESCROW_EXAMPLE_OUT to a folder you can write" >&2
  exit 3
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# The base image: Debian's static busybox in an image built FROM scratch
# (no registry is reachable, so nothing is pulled).
cp -r examples/base "$WORK/base"
cp "$(command -v busybox || echo /bin/busybox)" "$WORK/base/busybox"

escrow init >&2
escrow build "$WORK/base" -t escrow-example/base:latest --project example-base
escrow build examples/app -t escrow-example/app:latest --project example --build-arg GREETING=hello
escrow verify escrow-example/app:latest
escrow pack --project example-base --project example --requester "example auditor" -o "$OUT/example-pack.pdf" >&2
escrow pack verify "$OUT/example-pack.pdf" >&2
echo "audit pack: $OUT/example-pack.pdf"
