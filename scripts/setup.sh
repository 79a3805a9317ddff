#!/usr/bin/env bash
# Create ./.venv (Python 3.10+) and install flowcept-dist into it.
#   scripts/setup.sh            core + dask + analytics (what the demo needs)
#   scripts/setup.sh --all      every extra + test tools (torch pinned to the CPU build 2.13.0)
# Idempotent: re-running only installs what changed. Needs pip access to PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for c in python3.11 python3.12 python3.10 python3; do
    if command -v "$c" >/dev/null 2>&1; then PY="$c"; break; fi
  done
fi
[ -n "$PY" ] || { echo "setup: no python3 found; install Python 3.10+ first" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PY --version)" >&2
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip >&2
fi
# pip's exit status is kept; only its noise about missing local mirrors is filtered
pip_install() { .venv/bin/python -m pip install -q --disable-pip-version-check "$@" 2> >(grep -v "^WARNING: Location" >&2); }
stamp=".venv/.flowcept-setup${mode}"
sig="$(cat pyproject.toml scripts/setup.sh | cksum)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sig" ]; then
  exit 0
fi
if [ "$mode" = "--all" ]; then
  # torch first, pinned: any other spec may pull a multi-GB CUDA build
  .venv/bin/python -c "import torch" 2>/dev/null || pip_install "torch==2.13.0"
  pip_install -e ".[all,dev]"
  if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
      echo "setup: installing redis-server with apt-get" >&2
      (apt-get update -qq && apt-get install -y -qq redis-server) >&2
    else
      echo "setup: redis-server is missing; install it (apt-get install -y redis-server) to run the Redis tests" >&2
    fi
  fi
  # headless Chromium + its driver for the report's browser test (tests/export)
  if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
      echo "setup: installing chromium and chromium-driver with apt-get" >&2
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver) >&2
    else
      echo "setup: chromium/chromedriver are missing; install them (apt-get install -y chromium chromium-driver) to run the report's browser test" >&2
    fi
  fi
else
  pip_install -e ".[dask,analytics]"
fi
.venv/bin/python -c "import flowcept_dist" || { echo "setup: flowcept_dist does not import" >&2; exit 1; }
echo "$sig" > "$stamp"
