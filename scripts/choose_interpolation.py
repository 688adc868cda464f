"""Choose ``train.interpolate`` (WiSE-FT) on the VALID split: the mixes of one finished training with its base.

    .venv/bin/python scripts/choose_interpolation.py --config configs/full.yaml          # 1, 0.6, 0.4, 0.3, 0.2
    .venv/bin/python scripts/choose_interpolation.py --alphas 1,0.7 --corpus-max-passages 0   # whole corpus
    .venv/bin/python scripts/choose_interpolation.py --set train.hard_negatives=0 --train     # a variant, trained

Needs the configuration's training at ``train.interpolate: 1`` to be finished (``lex-dpr --config … train --set
train.interpolate=1``, or ``--train`` here: an MLflow run that leaves the ``trained_model`` asset alone) with
checkpoints picked by no validation (``train.eval_steps`` unset: the saved model is the last step), so each mix
is derived from it in seconds (``models.tracked.mix_is_derivable``), each one an MLflow run.
Every mix is then scored like ``lex-dpr eval --model`` (``evaluation.tracked.evaluate_model_folder``: the same
queries, exclusions and base model) on **valid only**, over ``--corpus-max-passages`` (every valid positive + a
seeded sample: the fast, labelled "sampled" option) or the whole corpus (``0``), dense only (the fine-tuned mix and
its base: BM25 and the hybrids do not enter the choice).

The rule, in the order of issue 14's targets: among the mixes at or above the base on every query type and source
(valid), the best fine-tuned dense valid nDCG@10 overall; when no mix is, the same among the mixes that pass the
forgetting check (``fine_tuned_keeps_the_base_on_valid``: no query type or source below ``1 − eval.max_drop_vs_base``
of the base); ties go to the larger ``interpolate`` (closer to what was trained). When none passes, the one whose
worst group loses least. Test is never read.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lexdpr_pipeline.artifacts import ArtifactStore, BaseModelManifest  # noqa: E402
from lexdpr_pipeline.evaluation.forgetting import forgetting, tuned_vs_base  # noqa: E402
from lexdpr_pipeline.evaluation.run import BASE, FINE_TUNED  # noqa: E402
from lexdpr_pipeline.evaluation.tracked import evaluate_model_folder  # noqa: E402
from lexdpr_pipeline.models.tracked import input_versions, mix_is_derivable, model_key, train_tracked  # noqa: E402
from lexdpr_pipeline.settings import load_settings, with_overrides  # noqa: E402

METRIC = "ndcg@10"
TUNE_SPLIT = "valid"


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "full.yaml")
    p.add_argument("--alphas", default="1,0.6,0.4,0.3,0.2", help="train.interpolate values to score (1 = as trained)")
    p.add_argument("--corpus-max-passages", type=int, default=20000, help="0: the whole merged_corpus")
    p.add_argument("--json", type=Path, help="also write the table and the choice here")
    p.add_argument("--set", action="append", default=[], help="a setting override, e.g. train.hard_negatives=0")
    p.add_argument("--train", action="store_true", help="train the interpolate-1 model first when it is missing")
    return p.parse_args(argv)


def worst_drop(table: pl.DataFrame) -> float:
    """The largest relative loss of the fine-tuned model to the base over the valid type/source groups (≤ 0 = none)."""
    wide = tuned_vs_base(table, split=TUNE_SPLIT, metric=METRIC).filter(pl.col("group") != "all")
    return min((t / b - 1 for _, t, b in wide.iter_rows() if b), default=0.0)


def choose_alpha(results: dict[float, pl.DataFrame], max_drop: float) -> tuple[float, bool]:
    """``(alpha, passed)`` by the module doc's rule from each alpha's evaluation table (valid rows only are read)."""
    if not results:
        raise ValueError("no interpolation was scored")

    def overall(table: pl.DataFrame) -> float:
        row = table.filter(
            (pl.col("split") == TUNE_SPLIT) & (pl.col("system") == FINE_TUNED) & (pl.col("group") == "all")
        )
        return float(row[METRIC][0])

    passing = [a for a, t in results.items() if forgetting(t, max_drop, split=TUNE_SPLIT).passed]
    if passing:
        # "fine-tuned ≥ the base on every type" first; the 2% check is the floor when no mix reaches it
        keeping = [a for a in passing if worst_drop(results[a]) >= 0]
        return max(keeping or passing, key=lambda a: (overall(results[a]), a)), True
    return max(results, key=lambda a: (worst_drop(results[a]), a)), False


def per_type(table: pl.DataFrame) -> dict[str, dict[str, float]]:
    rows = table.filter((pl.col("split") == TUNE_SPLIT) & pl.col("system").is_in([FINE_TUNED, BASE]))
    out: dict[str, dict[str, float]] = {}
    for system, group, value in rows.select("system", "group", METRIC).iter_rows():
        out.setdefault(system, {})[group] = round(float(value), 4)
    return out


def run(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    settings = with_overrides(load_settings(config_file=args.config), args.set)
    store = ArtifactStore.from_settings(settings)
    base = store.find_manifest("base_model", BaseModelManifest)
    if base is None:
        raise SystemExit("no base_model manifest: run `lex-dpr --config … gen-data` and `… train` first")
    splits, corpus = store.read_table("dataset_splits"), store.read_table("merged_corpus")
    twin = settings.train.model_copy(update={"interpolate": 1.0})
    if not mix_is_derivable(twin.model_copy(update={"interpolate": 0.5})):
        raise SystemExit("this training picks checkpoints by validation (train.eval_steps): mixes would retrain")
    key = model_key(base.content_hash, *input_versions(splits, corpus), twin)
    if not (store.folder("trained_model", key) / "model").is_dir():
        if not args.train:
            raise SystemExit("the training at train.interpolate=1 is missing: `lex-dpr --config … train` or --train")
        print("training the interpolate-1 model (an MLflow run, outside Dagster: the trained_model asset is untouched)")
        train_tracked(twin, settings.eval, settings.tracking, splits, corpus, base, store,
                      tags={"lexdpr/trigger": "choose_interpolation"})  # fmt: skip
    eval_cfg = settings.eval.model_copy(
        # dense only: the choice compares the fine-tuned mix with its base (BM25 and the hybrids do not enter it)
        update={"splits": [TUNE_SPLIT], "corpus_max_passages": args.corpus_max_passages or None, "compare_bm25": False}
    )
    results: dict[float, pl.DataFrame] = {}
    summary = []
    for alpha in [float(a) for a in args.alphas.split(",")]:
        t0 = time.perf_counter()
        trained = train_tracked(
            twin.model_copy(update={"interpolate": alpha}),
            settings.eval,
            settings.tracking,
            splits,
            corpus,
            base,
            store,
            tags={"lexdpr/trigger": "choose_interpolation"},
        )
        evaluation = evaluate_model_folder(
            eval_cfg, settings.tracking, store, trained.model_dir, tags={"lexdpr/trigger": "choose_interpolation"}
        )
        table = evaluation.run.table
        results[alpha] = table
        check = forgetting(table, settings.eval.max_drop_vs_base, split=TUNE_SPLIT)
        summary.append(
            {
                "interpolate": alpha,
                "model": str(trained.model_dir),
                "passes_forgetting_check": check.passed,
                "worst_drop_vs_base": round(worst_drop(table), 4),
                "valid": per_type(table),
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
        print(json.dumps(summary[-1], ensure_ascii=False), flush=True)
    chosen, passed = choose_alpha(results, settings.eval.max_drop_vs_base)
    corpus_label = "whole" if not args.corpus_max_passages else f"sampled ({args.corpus_max_passages} passages)"
    print(f"\nvalid, {corpus_label} corpus: fine-tuned dense nDCG@10 per group (base in the last line)\n")
    groups = sorted(summary[0]["valid"][FINE_TUNED])
    print("| interpolate | " + " | ".join(groups) + " | worst vs base | check |")
    print("|---" * (len(groups) + 3) + "|")
    for row in summary:
        cells = " | ".join(f"{row['valid'][FINE_TUNED][g]:.3f}" for g in groups)
        check = "pass" if row["passes_forgetting_check"] else "FAIL"
        print(f"| {row['interpolate']:g} | {cells} | {row['worst_drop_vs_base']:+.1%} | {check} |")
    base_cells = " | ".join(f"{summary[0]['valid'][BASE][g]:.3f}" for g in groups)
    print(f"| base | {base_cells} | | |")
    print(f"\ntrain.interpolate chosen on valid: {chosen:g} ({'passes' if passed else 'NO mix passes'} the check)")
    print(f"total {time.perf_counter() - started:.0f}s")
    out = {"chosen": chosen, "passed": passed, "corpus": corpus_label, "results": summary}
    if args.json:
        args.json.write_text(json.dumps(out, ensure_ascii=False, indent=2), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    run(_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
