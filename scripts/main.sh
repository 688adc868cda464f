#!/usr/bin/env bash
# The README's main job: set up, then materialize the whole asset graph (ingest → passages → pairs → training →
# evaluation → embeddings → FAISS), print the evaluation table and a sample search.
#   bash scripts/main.sh          demo-sized run (configs/demo.yaml, data/demo/): about 15 minutes on 2 CPU cores
#   bash scripts/main.sh full     the whole ../shared/corpus sample (configs/full.yaml, data/): hours on a CPU
#   LEXDPR_CONFIG=my.yaml bash scripts/main.sh   any other configuration
# History goes to <data_dir>/dagster_home, so a rerun with nothing changed makes nothing stale (`lex-dpr refresh`
# then runs nothing); the hyperparameter sweep is its own job (`lex-dpr sweep`), not part of this run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mode="${1:-demo}"
export LEXDPR_CONFIG="${LEXDPR_CONFIG:-configs/${mode}.yaml}"
[ -f "$LEXDPR_CONFIG" ] || { echo "no config $LEXDPR_CONFIG (modes: demo, full)" >&2; exit 2; }
data_dir="$(.venv/bin/python -c 'from lexdpr_pipeline.settings import load_settings; print(load_settings().data_dir)')"
export DAGSTER_HOME="$data_dir/dagster_home"
mkdir -p "$DAGSTER_HOME"
[ -f "$DAGSTER_HOME/dagster.yaml" ] || cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"
# The Dagster CLI (and `dagster dev`) read .env from the working directory and let it override the environment;
# `lex-dpr` reads the same two lines when the environment does not set them: point both at this run's instance and
# configuration, so that later `lex-dpr search`/`api`/`eval --show` find it (other lines, e.g. LAW_GO_KR_OC, are kept).
touch .env
sed -i '/^DAGSTER_HOME=/d;/^LEXDPR_CONFIG=/d' .env
printf 'DAGSTER_HOME=%s\nLEXDPR_CONFIG=%s\n' "$DAGSTER_HOME" "$(realpath "$LEXDPR_CONFIG")" >> .env
echo "config $LEXDPR_CONFIG, data in $data_dir"
start=$(date +%s)
# Observe the mirrors first (content fingerprints), so each materialization records the mirror version it read.
.venv/bin/dagster job execute -m lexdpr_pipeline.definitions -j observe_sources_job
.venv/bin/dagster asset materialize -m lexdpr_pipeline.definitions --select "${LEXDPR_SELECT:-*}"
echo "main job finished in $(( $(date +%s) - start ))s"
.venv/bin/lex-dpr status
.venv/bin/lex-dpr eval --show
.venv/bin/lex-dpr search "불법행위로 타인의 물건을 손괴한 경우 손해배상 책임" --top-k 5 --mode hybrid
# Where this run lives (config, data, Dagster instance, index, MLflow store) and the `mlflow ui` command for it;
# from this directory `lex-dpr` finds the run by itself (.env), elsewhere pass --config "$LEXDPR_CONFIG".
.venv/bin/lex-dpr info
