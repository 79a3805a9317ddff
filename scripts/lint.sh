#!/usr/bin/env bash
# Lint and type-check the package (run by scripts/test.sh before the tests): ruff, then mypy.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check flowcept_dist scheduler_plugins worker_plugins torch_hooks tests benchmarks examples deploy
.venv/bin/mypy
.venv/bin/python scripts/check_imports.py
