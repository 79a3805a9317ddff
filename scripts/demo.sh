#!/usr/bin/env bash
# The main job: a real Dask workflow captured into the embedded LMDB store, then a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python examples/dask_demo.py "$@"
