#!/usr/bin/env bash
# The README's main job: set up, then materialize the whole asset graph on the legalize-kr mirror
# (default ../shared/corpus; point LEXDPR_MIRROR_DIR at a full clone of the public mirrors for everything).
# History goes to data/dagster_home, so a rerun with nothing changed makes nothing stale.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DAGSTER_HOME="$(pwd)/data/dagster_home"
start=$(date +%s)
# Observe the mirrors first (content fingerprints), so each materialization records the mirror version it read.
.venv/bin/dagster job execute -m lexdpr_pipeline.definitions -j observe_sources_job
.venv/bin/dagster asset materialize -m lexdpr_pipeline.definitions --select "${LEXDPR_SELECT:-*}"
echo "main job finished in $(( $(date +%s) - start ))s"
.venv/bin/lex-dpr status
