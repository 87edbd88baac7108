#!/usr/bin/env bash
# Set up everything the tests need (Debian packages, Python environment, Docker
# Engine, a throwaway PostgreSQL cluster), run the linters, then the whole suite.
set -euo pipefail
# test-only packages: Go and golang.org/x/mod, to check checkpoints with Go's own note verifier
export ESCROW_EXTRA_PACKAGES="golang-go golang-golang-x-mod-dev faketime"
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"

ESCROW_TEST_PG_URL="$(bash scripts/pg.sh)"
export ESCROW_TEST_PG_URL
if [[ -f scripts/registry.sh ]]; then
  ESCROW_TEST_REGISTRY="$(bash scripts/registry.sh)"
  export ESCROW_TEST_REGISTRY
fi

say "lint: ruff"
ruff check escrow tests bench
ruff format --check escrow tests bench

say "tests"
# Three workers (pytest-xdist) on the two cores: the tests that use the Docker Engine run
# one at a time on one of them (tests/conftest.py groups them), the rest — ledger, server,
# PostgreSQL, packs — on any; many of those wait on a server, a renderer or a timestamp
# held on purpose, so a third worker fills that time. ESCROW_TEST_WORKERS=0 runs the suite
# in this one process. The 25 slowest tests are listed at the end: the suite must stay
# under 15 minutes.
python -m pytest -n "${ESCROW_TEST_WORKERS:-3}" --dist loadgroup --durations=25 "$@"
