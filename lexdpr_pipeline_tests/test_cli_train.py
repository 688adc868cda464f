"""``lex-dpr smoke-train`` and ``lex-dpr eval`` through the real CLI on a small real slice (tiny model)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from lexdpr_pipeline_tests.assets.test_training_data_assets import LAWS, _civil_precedents_citing
from lexdpr_pipeline_tests.conftest import CORPUS

BIN = Path(sys.executable).parent


@pytest.mark.slow
def test_smoke_train_then_eval_from_the_cli(tmp_path: Path, tiny_model_dir: Path) -> None:
    mirror = tmp_path / "mirror"
    for law in LAWS:
        shutil.copytree(CORPUS / "legalize-kr" / "kr" / law, mirror / "legalize-kr" / "kr" / law)
    dest = mirror / "precedent-kr" / "민사" / "대법원"
    dest.mkdir(parents=True)
    for path in _civil_precedents_citing("민법", 40):
        shutil.copy(path, dest / path.name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEXDPR", "LAW_GO_KR", "DAGSTER", "MLFLOW"))}
    env.update(LEXDPR_MIRROR_DIR=str(mirror), LEXDPR_DATA_DIR=str(tmp_path / "data"))
    sets = [
        f"models.base_model={tiny_model_dir}",
        "text.max_tokens=128",
        "text.prec_body_max_chunks=2",
        "pairs.min_pairs=20",
        "train.template=none",
        "train.batch_size=8",
        "eval.corpus_max_passages=300",
        "eval.ks=[1,10]",
    ]
    args = [str(BIN / "lex-dpr"), *(f"--set={s}" for s in sets)]

    def run(*cmd: str) -> str:
        proc = subprocess.run([*args, *cmd], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    out = run("smoke-train")
    assert "also materializing missing upstream" in out and "dataset_splits" in out
    assert "valid nDCG@10:" in out and "MLflow run: http" in out
    model_dirs = list((tmp_path / "data" / "models" / "trained").glob("*/model"))
    assert len(model_dirs) == 1 and (model_dirs[0] / "lexdpr_training.json").exists()

    out = run("eval")
    assert "fine-tuned" in out and "bm25" in out and "ndcg@10" in out.lower()
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'data' / 'mlflow' / 'mlflow.db'}")
    names = [r.info.run_name for r in client.search_runs([client.get_experiment_by_name("lexdpr").experiment_id])]
    assert sorted(n.split()[0] for n in names) == ["evaluation", "train"]
    assert (tmp_path / "data" / "mlflow" / "artifacts").is_dir()  # artifacts beside the store, not ./mlruns
    assert not (tmp_path / "mlruns").exists()
