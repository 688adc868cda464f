#!/usr/bin/env bash
# The README's test command: set up, lint, run the whole (offline) test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check lexdpr_pipeline lexdpr_pipeline_tests
.venv/bin/ruff format --check lexdpr_pipeline lexdpr_pipeline_tests
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
[ "${LEXDPR_GRAPH_CHECK:-1}" = 0 ] || .venv/bin/python scripts/graph_check.py  # whole graph + stale-only reruns (~4-6 min)
