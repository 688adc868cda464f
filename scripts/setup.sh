#!/usr/bin/env bash
# Create .venv (Python 3.11) and install LexDPR with its pinned dependencies (constraints.txt).
# Idempotent: a second run only checks. Needs only the package registries, no other network.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.lexdpr-installed
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade "pip>=24"
  # postgres: the PostgreSQL profile's drivers (deploy/dagster-postgres, docs/DEPLOY.md). dagster-postgres pins dagster
  # exactly and 1.13.28's release is not on PyPI: 0.29.27 (constraints.txt) goes in beside it without its deps.
  .venv/bin/python -m pip install --quiet -c constraints.txt -e ".[test,postgres]"
  .venv/bin/python -m pip install --quiet --no-deps -c constraints.txt dagster-postgres
  # k8s: the executor deploy/helm configures (schedule.executor: k8s); 0.29.27 the same way, its client from PyPI.
  .venv/bin/python -m pip install --quiet -c constraints.txt "kubernetes<37"
  .venv/bin/python -m pip install --quiet --no-deps -c constraints.txt dagster-k8s
  echo "$want" > "$stamp"
fi
# Persistent Dagster instance under data/ so history (and staleness) survives between CLI runs.
# LEXDPR_DAGSTER_PROFILE=postgres: its dagster.yaml is the PostgreSQL one (`lex-dpr` switches a stock file too).
mkdir -p data/dagster_home
profile_yaml=dagster.yaml
[ "${LEXDPR_DAGSTER_PROFILE:-}" = postgres ] && profile_yaml=deploy/dagster-postgres/dagster.yaml
[ -f data/dagster_home/dagster.yaml ] || cp "$profile_yaml" data/dagster_home/dagster.yaml
# `dagster dev` / `dagster asset materialize` read .env from the working directory (git-ignored: keep secrets here).
if [ ! -f .env ] || ! grep -q '^DAGSTER_HOME=' .env; then
  echo "DAGSTER_HOME=$(pwd)/data/dagster_home" >> .env
fi
# Chromium: the test that /docs renders with the network off (lexdpr_pipeline_tests/api/test_docs_offline.py).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
      || echo "setup: could not install chromium; the offline /docs browser test will be skipped" >&2
  else
    echo "setup: no chromium (as root: apt-get install chromium); the offline /docs browser test will be skipped" >&2
  fi
fi
echo "setup ok: $(.venv/bin/python --version), dagster $(.venv/bin/python -c 'import dagster; print(dagster.__version__)')"
