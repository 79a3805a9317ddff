#!/usr/bin/env bash
# Install everything (first run: about 2 minutes) and run the whole test suite against real services.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --all
bash scripts/lint.sh
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_AUTH_MODE=disabled
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
