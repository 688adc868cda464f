"""The pairs report: markdown + four PNGs on disk, numbers equal to counts computed here independently."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from lexdpr_pipeline.index.bm25 import BM25Index
from lexdpr_pipeline.pairs.negatives import REMOVED_COLUMN, RULES, mine_bm25_negatives
from lexdpr_pipeline.pairs.report import PairsReport, build_pairs_report, model_max_seq_length, write_pairs_report
from lexdpr_pipeline.pairs.splits import SplitConfig, assign_splits, split_sizes
from lexdpr_pipeline.settings import PairsSettings, TrainSettings
from lexdpr_pipeline.text.chunking import WhitespaceTokenCounter
from lexdpr_pipeline_tests.pairs.conftest import RealSlice

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IMAGES = {"query_types", "token_lengths", "per_query_counts", "splits"}


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR", path
    return struct.unpack(">II", data[16:24])


def check_files(report: PairsReport, out_dir: Path) -> None:
    assert report.markdown_path == out_dir / "pairs_report.md"
    assert report.markdown_path.read_text(encoding="utf-8") == report.markdown
    assert set(report.images) == IMAGES
    for name, path in report.images.items():
        assert path == out_dir / f"{name}.png" and path.is_file()
        width, height = png_size(path)
        assert width > 200 and height > 100
        assert f"]({name}.png)" in report.markdown
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(["pairs_report.md", *(f"{n}.png" for n in IMAGES)])


def synthetic_splits() -> pl.DataFrame:
    rows = [
        # query_id, type, group, split, positives, negatives, query tokens, former
        ("q:law:1:750", "law", "law:1:750", "train", ["a"], ["x", "y", "z"], 4, False),
        ("q:law:1:758", "law", "law:1:758", "valid", ["a", "b"], ["x", "y", "z"], 6, False),
        ("q:cross_law:7:1", "cross_law", "prec:7", "train", ["a", "b", "c"], ["x"], 70, True),
        ("q:cross_law:7:2", "cross_law", "prec:7", "train", ["a"], ["x", "y", "z"], 10, False),
        ("q:prec:9", "prec", "prec:9", "test", ["s"], [], 80, False),
    ]
    return pl.DataFrame(
        [
            {
                "query_id": q,
                "query_type": t,
                "group_id": g,
                "split": s,
                "positive_ids": p,
                "negative_ids": n,
                "query_n_tokens": k,
                "former_citation": f,
            }
            for q, t, g, s, p, n, k, f in rows
        ],
        schema={
            "query_id": pl.String(),
            "query_type": pl.String(),
            "group_id": pl.String(),
            "split": pl.String(),
            "positive_ids": pl.List(pl.String()),
            "negative_ids": pl.List(pl.String()),
            "query_n_tokens": pl.Int32(),
            "former_citation": pl.Boolean(),
        },
    )


SYNTHETIC_CORPUS = pl.DataFrame(
    {
        "passage_id": ["law:1:750", "law:1:758", "prec:7#0", "prec:9#0"],
        "doc_id": ["law:1:750", "law:1:758", "prec:7", "prec:9"],
        "source": ["law", "law", "prec", "prec"],
        "n_tokens": [10, 65, 100, 20],
    },
    schema_overrides={"n_tokens": pl.Int32()},
)
CITATION_STATS = {
    "statute": {"total": 10, "resolved": 8, "by_status": {"resolved": 8, "law_not_in_corpus": 2}},
    "case": {"total": 0, "resolved": 0, "by_status": {}},
}


def test_synthetic_report_tables(tmp_path: Path) -> None:
    out = tmp_path / "reports" / "training_data"
    report = build_pairs_report(
        synthetic_splits(),
        SYNTHETIC_CORPUS,
        CITATION_STATS,
        out,
        negatives_per_query=3,
        train_max_seq_length=64,
        tokenizer_name="whitespace",
    )
    check_files(report, out)
    assert report.summary == {
        "queries": 5,
        "queries_by_type": {"law": 2, "cross_law": 2, "prec": 1},
        "split_sizes": {"train": 3, "valid": 1, "test": 1},
        "short_negative_rows": 2,
        "queries_over_train_max_seq_length": 2,
        "passages_over_train_max_seq_length": 2,
    }
    lines = report.markdown.splitlines()
    assert "5 queries, 4 source documents; corpus of 4 passages. Token counts use `whitespace`." in lines
    # type | queries | share | pos/query | max pos | neg/query | < 3 neg | median q tokens | former-law
    assert "| law | 2 | 40.0% | 1.50 | 2 | 3.00 | 0 | 5 | 0 |" in lines
    assert "| cross_law | 2 | 40.0% | 2.00 | 3 | 2.00 | 1 | 40 | 1 |" in lines
    assert "| prec | 1 | 20.0% | 1.00 | 1 | 0.00 | 1 | 80 | 0 |" in lines
    assert lines.index("| prec | 1 | 20.0% | 1.00 | 1 | 0.00 | 1 | 80 | 0 |") > lines.index(
        "| law | 2 | 40.0% | 1.50 | 2 | 3.00 | 0 | 5 | 0 |"
    )  # most queries first
    split_header = next(line for line in lines if line.startswith("| split | queries | documents |"))
    columns = [c.strip() for c in split_header.strip("|").split("|")][3:]
    expected = {"train": (3, 2, {"law": 1, "cross_law": 2}), "valid": (1, 1, {"law": 1}), "test": (1, 1, {"prec": 1})}
    for name, (queries, docs, per_type) in expected.items():
        cells = [str(per_type.get(c, 0)) for c in columns]
        assert f"| {name} | {queries} | {docs} | {' | '.join(cells)} |" in lines
    assert "| source | passages | documents |" in lines
    assert "| law | 2 | 2 |" in lines and "| prec | 2 | 2 |" in lines
    assert "| statute | 10 | 8 | 80.0% | law_not_in_corpus: 2 |" in lines
    assert "| case | 0 | 0 | - |  |" in lines
    query_row = next(line for line in lines if line.startswith("| query tokens |"))
    assert query_row.startswith("| query tokens | 34.0 |") and query_row.endswith("| 80 | 2 |")
    passage_row = next(line for line in lines if line.startswith("| passage tokens |"))
    assert passage_row.startswith("| passage tokens | 48.8 |") and passage_row.endswith("| 100 | 2 |")


@pytest.fixture(scope="module")
def real_splits(real_slice: RealSlice, real_bm25: BM25Index) -> pl.DataFrame:
    pairs, _ = mine_bm25_negatives(
        real_slice.pairs,
        real_slice.merged,
        real_bm25,
        per_query=5,
        citations=real_slice.citations,
        max_overlap=0.6,
        progress=False,
    )
    # Leave the prec queries without negatives, so the report has short rows to count.
    pairs = pairs.with_columns(
        pl.when(pl.col("query_type") == "prec")
        .then(pl.lit([], dtype=pl.List(pl.String())))
        .otherwise(pl.col("negative_ids"))
        .alias("negative_ids")
    )
    counter = WhitespaceTokenCounter()
    tokens = [len(s) for s in counter.spans_many(pairs["query_text"].to_list())]
    pairs = pairs.with_columns(pl.Series("query_n_tokens", tokens, dtype=pl.Int32()))
    return assign_splits(pairs, SplitConfig())


def test_real_report(tmp_path: Path, real_slice: RealSlice, real_splits: pl.DataFrame) -> None:
    corpus = real_slice.merged
    report = build_pairs_report(
        real_splits,
        corpus,
        real_slice.citation_stats,
        tmp_path,
        negatives_per_query=5,
        train_max_seq_length=40,
        tokenizer_name="whitespace",
    )
    check_files(report, tmp_path)
    by_type: dict[str, int] = {}
    for t in real_splits["query_type"]:
        by_type[t] = by_type.get(t, 0) + 1
    short = sum(len(n) < 5 for n in real_splits["negative_ids"])
    long_queries = sum(n > 40 for n in real_splits["query_n_tokens"])
    long_passages = sum(n > 40 for n in corpus["n_tokens"])
    assert short >= by_type["prec"] > 0 and long_queries > 0 and long_passages > 0
    expected: dict[str, Any] = {
        "queries": real_splits.height,
        "queries_by_type": by_type,
        "split_sizes": split_sizes(real_splits),
        "short_negative_rows": short,
        "queries_over_train_max_seq_length": long_queries,
        "passages_over_train_max_seq_length": long_passages,
        "negatives_removed_by_rule": {
            rule: int(real_splits[REMOVED_COLUMN].struct.field(rule).sum()) for rule in RULES
        },
    }
    assert report.summary == expected
    removed = expected["negatives_removed_by_rule"]
    assert removed["positive_document"] > 0 and removed["cited_by_query_decision"] > 0  # the table is not all zeros
    assert "## Hard negatives removed (false-negative rules)" in report.markdown
    assert "| cited_by_query_decision | " in report.markdown
    assert any(
        line.startswith("| shares_citation |") and line.endswith(f"| {removed['shares_citation']} |")
        for line in report.markdown.splitlines()
    )
    groups = len(set(real_splits["group_id"]))
    assert f"{real_splits.height} queries, {groups} source documents; corpus of {corpus.height} passages." in (
        report.markdown
    )
    statute = real_slice.citation_stats["statute"]
    rate = f"{statute['resolved'] / statute['total']:.1%}"
    assert f"| statute | {statute['total']} | {statute['resolved']} | {rate} |" in report.markdown
    for name in ("train", "valid", "test"):
        docs = len(set(real_splits.filter(pl.col("split") == name)["group_id"]))
        assert f"| {name} | {expected['split_sizes'][name]} | {docs} |" in report.markdown


def test_report_with_an_empty_split(tmp_path: Path) -> None:
    """A split with no queries is reported as zeros rather than breaking the report."""
    splits = synthetic_splits().filter(pl.col("split") != "valid")
    report = build_pairs_report(
        splits,
        SYNTHETIC_CORPUS,
        CITATION_STATS,
        tmp_path,
        negatives_per_query=3,
        train_max_seq_length=64,
        tokenizer_name="whitespace",
    )
    check_files(report, tmp_path)
    assert report.summary["split_sizes"] == {"train": 3, "valid": 0, "test": 1}
    assert any(line.startswith("| valid | 0 | 0 |") for line in report.markdown.splitlines())


def test_report_overwrites_previous_files(tmp_path: Path) -> None:
    args: dict[str, Any] = {"negatives_per_query": 3, "train_max_seq_length": 64, "tokenizer_name": "whitespace"}
    build_pairs_report(synthetic_splits(), SYNTHETIC_CORPUS, CITATION_STATS, tmp_path, **args)
    smaller = synthetic_splits().filter(pl.col("query_type") != "prec")
    report = build_pairs_report(smaller, SYNTHETIC_CORPUS, CITATION_STATS, tmp_path, **args)
    assert "4 queries," in (tmp_path / "pairs_report.md").read_text(encoding="utf-8")
    check_files(report, tmp_path)
    assert report.summary["queries"] == 4


def test_lengths_are_counted_against_the_training_and_the_model_limit(tmp_path: Path) -> None:
    """train.max_seq_length (where training truncates) and the base model's own limit, read from its folder."""
    model = tmp_path / "model"  # a sentence-transformers 6 save: the limit is the tokenizer's, capped by the config
    model.mkdir()
    (model / "modules.json").write_text('[{"idx": 0, "name": "0", "path": "", "type": "x.Transformer"}]')
    (model / "sentence_bert_config.json").write_text('{"transformer_task": "feature-extraction"}')
    (model / "tokenizer_config.json").write_text('{"model_max_length": 1000000000000000019884624838656}')
    (model / "config.json").write_text('{"max_position_embeddings": 75}')
    assert model_max_seq_length(model) == 75  # the tokenizer's "unlimited" is ignored: the config's 75
    (model / "tokenizer_config.json").write_text('{"model_max_length": 60}')
    assert model_max_seq_length(model) == 60
    legacy = tmp_path / "legacy"  # an older save: max_seq_length in the module's sentence_bert_config.json
    (legacy / "0_Transformer").mkdir(parents=True)
    (legacy / "modules.json").write_text('[{"idx": 0, "name": "0", "path": "0_Transformer", "type": "x"}]')
    (legacy / "0_Transformer" / "sentence_bert_config.json").write_text('{"max_seq_length": 40}')
    assert model_max_seq_length(legacy) == 40
    assert model_max_seq_length(tmp_path / "none") is None and model_max_seq_length(None) is None
    (model / "tokenizer_config.json").write_text('{"model_max_length": 75}')
    citations = pl.DataFrame(schema={"kind": pl.String, "status": pl.String})
    report = write_pairs_report(
        synthetic_splits(),
        SYNTHETIC_CORPUS,
        citations,
        tmp_path / "out",
        pairs=PairsSettings(negatives_per_query=3),
        train=TrainSettings(max_seq_length=8),
        tokenizer_name="whitespace",
        model_max_seq_length=model_max_seq_length(model),
    )
    # query tokens 4, 6, 70, 10, 80; passage tokens 10, 65, 100, 20
    assert report.summary["queries_over_train_max_seq_length"] == 3
    assert report.summary["passages_over_train_max_seq_length"] == 4
    assert report.summary["queries_over_model_max_seq_length"] == 1
    assert report.summary["passages_over_model_max_seq_length"] == 1
    lines = report.markdown.splitlines()
    assert "| what | mean | p50 | p90 | p99 | max | > 8 (train) | > 75 (model) |" in lines
    assert next(line for line in lines if line.startswith("| query tokens |")).endswith("| 80 | 3 | 1 |")
    assert report.summary["short_negative_rows"] == 2  # pairs.negatives_per_query reached the report
