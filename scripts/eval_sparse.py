"""Sparse retrieval on the headline split: BM25, BM25 + citation expansion, and each + query citation linking.

    .venv/bin/python scripts/eval_sparse.py --config configs/full.yaml            # weights 0, 0.5, 1, 2
    .venv/bin/python scripts/eval_sparse.py --config configs/full.yaml --weights 0,1 --json out.json

Reads the stored tables of the configuration (``lex-dpr --config … gen-data`` builds them: merged_corpus,
precedent_citations, raw_precedents, dataset_splits) and its bm25_index, and runs the library evaluation the
``model_evaluation`` asset runs (``evaluation.run.run_evaluation``: the same queries, exclusions, metrics and linking
chosen on valid), with no dense model — dense needs the whole corpus embedded first. The expansion field is built
from ``citation_expansion`` with the configuration's split (training-period decisions only) and added to the stored
BM25 index without re-tokenizing the corpus.

The expansion weight is chosen on the VALID split by a rule fixed in advance: the largest valid nDCG@10 overall
among the weights whose every query type stays within ``--max-type-drop`` (2%) of weight 0. Test is reported, never
used to choose.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lexdpr_pipeline.artifacts import ArtifactStore, Bm25IndexManifest  # noqa: E402
from lexdpr_pipeline.citations.expansion import ExpansionConfig, citation_expansion, passage_expansions  # noqa: E402
from lexdpr_pipeline.evaluation.run import EvalPlan, run_evaluation  # noqa: E402
from lexdpr_pipeline.index.bm25 import BM25Index  # noqa: E402
from lexdpr_pipeline.pairs.splits import SplitConfig  # noqa: E402
from lexdpr_pipeline.settings import load_settings  # noqa: E402

METRICS = ("ndcg@10", "recall@100")


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "full.yaml")
    p.add_argument("--weights", default="0,0.5,1,2", help="expansion weights to score (0 = no expansion)")
    p.add_argument("--max-type-drop", type=float, default=0.02, help="choice rule: largest relative per-type loss")
    p.add_argument("--json", type=Path, help="also write the table and the choice here")
    p.add_argument("--sources", help="expansion sources, e.g. law,prec (default: the config's index.expansion_sources)")
    p.add_argument("--splits", default="valid,test", help="splits to score (valid alone while choosing)")
    return p.parse_args(argv)


def split_config(settings) -> SplitConfig:
    p = settings.pairs
    if p.split_mode == "temporal":
        return SplitConfig(
            mode="temporal",
            valid_from=dt.date.fromisoformat(p.valid_from),
            test_from=dt.date.fromisoformat(p.test_from),
        )
    return SplitConfig(
        mode="digit",
        train_digits=tuple(p.train_digits),
        valid_digits=tuple(p.valid_digits),
        test_digits=tuple(p.test_digits),
    )


def choose_weight(table: pl.DataFrame, max_type_drop: float) -> float:
    """The expansion weight chosen on valid (module doc): plain BM25 rows only."""
    valid = table.filter((pl.col("split") == "valid") & (pl.col("system") == "bm25"))
    types = valid.filter(pl.col("group").str.starts_with("type:"))
    reference = dict(types.filter(pl.col("expansion_weight") == 0).select("group", "ndcg@10").iter_rows())
    if not reference:
        raise SystemExit("the choice rule compares with weight 0: include 0 in --weights")
    best, best_score = 0.0, float("-inf")
    for weight in sorted(set(valid["expansion_weight"].to_list())):
        rows = types.filter(pl.col("expansion_weight") == weight)
        worst = min(
            (score / reference[group] - 1 for group, score in rows.select("group", "ndcg@10").iter_rows()),
            default=0.0,
        )
        overall = valid.filter((pl.col("expansion_weight") == weight) & (pl.col("group") == "all"))["ndcg@10"][0]
        if worst >= -max_type_drop and overall > best_score:
            best, best_score = weight, overall
    return best


def markdown(table: pl.DataFrame, split: str) -> str:
    rows = table.filter((pl.col("split") == split) & ~pl.col("group").str.starts_with("source:"))
    lines = [
        "| system | expansion w | " + " | ".join(sorted(set(rows["group"].to_list()))) + " |",
    ]
    groups = sorted(set(rows["group"].to_list()))
    lines.append("|---|---|" + "---|" * len(groups))
    for (system, weight), part in rows.group_by(["system", "expansion_weight"], maintain_order=True):
        by_group = {r["group"]: r for r in part.iter_rows(named=True)}
        cells = [f"{by_group[g]['ndcg@10']:.3f} ({by_group[g]['recall@100']:.3f})" for g in groups]
        lines.append(f"| {system} | {weight:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    settings = load_settings(config_file=args.config)
    store = ArtifactStore.from_settings(settings)
    splits = store.read_table("dataset_splits")
    corpus = store.read_table("merged_corpus")
    base = BM25Index.load(store.read_manifest("bm25_index", Bm25IndexManifest).path)
    if base.has_expansion:  # a stored expanded index: weight 0 scores exactly as the plain one
        base = base.with_expansion_weight(0)
    expansion, stats = citation_expansion(
        store.read_table("precedent_citations"),
        store.read_table("raw_precedents"),
        corpus,
        split_config(settings),
        ExpansionConfig(
            max_decisions=settings.index.expansion_max_decisions,
            max_chars=settings.index.expansion_max_chars,
            sources=tuple(args.sources.split(",") if args.sources else settings.index.expansion_sources),
        ),
    )
    print(f"expansion: {json.dumps(stats.as_dict(), ensure_ascii=False)}", flush=True)
    order = pl.DataFrame({"passage_id": base.ids}).join(
        corpus.select("passage_id", "doc_id"), on="passage_id", how="left", maintain_order="left"
    )
    field = base.with_expansion_texts(passage_expansions(order, expansion))
    splits_scored = tuple(args.splits.split(","))
    plan = EvalPlan(ks=(1, 5, 10, 100), splits=splits_scored, corpus_max_passages=None, seed=settings.eval.seed)
    tables, doc_tables = [], []
    for weight in [float(w) for w in args.weights.split(",")]:
        index = field.with_expansion_weight(weight) if weight > 0 else base
        t0 = time.perf_counter()
        result = run_evaluation({}, splits, corpus, plan, bm25=True, full_bm25=lambda i=index: i, progress=False)
        print(f"weight {weight:g}: {time.perf_counter() - t0:.0f}s", flush=True)
        for out, frame in ((tables, result.table), (doc_tables, result.document_table)):
            out.append(
                frame.select("system", "split", "group", "n_queries", *METRICS).with_columns(
                    pl.lit(weight).alias("expansion_weight")
                )
            )
    table, documents = pl.concat(tables), pl.concat(doc_tables)
    chosen = choose_weight(table, args.max_type_drop)
    print(f"\ncorpus: the whole merged_corpus ({corpus.height} passages); split: {split_config(settings).mode}")
    for split in splits_scored:
        print(f"\n## {split}: nDCG@10 (Recall@100)\n")
        print(markdown(table, split))
        print(f"\n## {split}, as served (one hit per document): nDCG@10 (Recall@100)\n")
        print(markdown(documents, split))
    print(f"\nexpansion weight chosen on valid (max per-type drop {args.max_type_drop:.0%}): {chosen:g}")
    print(f"total {time.perf_counter() - started:.0f}s")
    out = {
        "chosen_weight": chosen,
        "expansion": stats.as_dict(),
        "rows": table.to_dicts(),
        "document_rows": documents.to_dicts(),  # the same rankings, one hit per document (evaluation.documents)
    }
    if args.json:
        args.json.write_text(json.dumps(out, ensure_ascii=False, indent=2), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    run(_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
