#!/usr/bin/env bash
# Shared set-up, sourced by scripts/example.sh and scripts/test.sh.
# Installs what is missing (Debian packages, the Python environment) and starts
# the Docker Engine when none answers.  Safe to run again: it only does what is missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
export PATH="$VENV/bin:$PATH"

say() { printf '[setup] %s\n' "$*" >&2; }

# Debian packages: the engine, the example's busybox, WeasyPrint's Pango and fonts (DejaVu;
# WenQuanYi Zen Hei for Chinese, Japanese and Korean names, Symbola for emoji),
# poppler for PDF checks, PostgreSQL, the registry and skopeo for the tests.
APT_PACKAGES=(docker.io busybox-static poppler-utils postgresql docker-registry skopeo
  libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core fonts-wqy-zenhei
  fonts-symbola zstd git ca-certificates)
# scripts/test.sh adds what only the tests need (e.g. Go's note verifier for interop tests)
read -r -a _extra <<<"${ESCROW_EXTRA_PACKAGES:-}"
APT_PACKAGES+=("${_extra[@]}")

missing_packages() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

ensure_packages() {
  local missing
  mapfile -t missing < <(missing_packages "${APT_PACKAGES[@]}")
  if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    missing+=(python3 python3-venv)
  fi
  ((${#missing[@]} == 0)) && return 0
  if [[ $(id -u) -ne 0 ]]; then
    say "missing Debian packages: ${missing[*]}"
    say "run as root, or install them first: sudo apt-get install ${missing[*]}"
    exit 3
  fi
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# A user who is not root, with an environment another user (root) made: say what to do
# rather than fail part way through `python3 -m venv` or pip with their tracebacks.
cannot_set_up_python() {
  say "$1, and $(id -un) may not write $2:"
  say "${3:-run bash scripts/setup.sh once as root (or as the owner of $2)}, or work in a clone of your own"
  exit 3
}

ensure_python() {
  local stamp="$VENV/.escrow-installed"
  local want
  want="$(cat "$ROOT/pyproject.toml" "$ROOT/constraints.txt" | sha256sum | cut -d' ' -f1)"
  if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c '' 2>/dev/null; then
    if [[ -e "$VENV" || -L "$VENV/bin/python" ]] && [[ ! -w "$VENV" ]]; then
      # e.g. root's environment, whose Python lies under root's private home
      local python
      python="$(readlink -m "$VENV/bin/python")"
      cannot_set_up_python "the Python environment in $VENV cannot be run by $(id -un) (its Python, $python, is missing or not permitted)" \
        "$VENV" "ask its owner to let every user run $python or to remake $VENV with a Python every user can run"
    fi
    if [[ ! -e "$VENV" && ! -w "$ROOT" ]]; then
      cannot_set_up_python "there is no Python environment in $VENV yet" "$ROOT"
    fi
    say "creating the Python environment in $VENV"
    python3 -m venv "$VENV"
  fi
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    if [[ ! -w "$VENV" ]]; then
      cannot_set_up_python "the Python environment in $VENV is not up to date with pyproject.toml and constraints.txt" "$VENV"
    fi
    say "installing escrow and its dependencies into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    # the dependency versions the suite last passed with (constraints.txt), not whatever
    # was released since
    "$VENV/bin/python" -m pip install -q -e "$ROOT[dev]" -c "$ROOT/constraints.txt" 2>&1 \
      | grep -v '^WARNING: Location' >&2 || true
    "$VENV/bin/python" -c 'import escrow, docker, weasyprint, sqlmodel' \
      || { say "the Python environment could not be installed"; exit 3; }
    echo "$want" >"$stamp"
  fi
  # byte-compile escrow as an installed package would be (an editable install is not)
  "$VENV/bin/python" -m compileall -q "$ROOT/escrow" >/dev/null || true
}

ensure_docker() {
  if docker info >/dev/null 2>&1; then return 0; fi
  if ! command -v dockerd >/dev/null && [[ ! -x /usr/sbin/dockerd ]]; then
    say "the Docker Engine is not installed: install Debian's docker.io (apt-get install docker.io)"
    exit 3
  fi
  if [[ $(id -u) -ne 0 && -S /var/run/docker.sock && -z "${DOCKER_HOST:-}" ]]; then
    say "the Docker Engine is running but $(id -un) may not use /var/run/docker.sock:"
    say "add the user to the docker group (usermod -aG docker $(id -un)) or run as root"
    exit 3
  fi
  if [[ $(id -u) -ne 0 ]]; then
    say "no Docker Engine answers and only root can start one here:"
    say "ask an administrator to start dockerd, or add your user to the docker group"
    exit 3
  fi
  say "starting the Docker Engine (dockerd) in the background; log in /var/log/escrow-dockerd.log"
  setsid nohup "$(command -v dockerd || echo /usr/sbin/dockerd)" >/var/log/escrow-dockerd.log 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  say "dockerd did not come up; see /var/log/escrow-dockerd.log"
  exit 3
}

ensure_packages
ensure_docker   # before the Python environment: a user who cannot reach an engine learns it at once
ensure_python
