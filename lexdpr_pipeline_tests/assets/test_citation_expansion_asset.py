"""citation_expansion and the bm25_index that indexes it, materialized in a tiny Dagster graph (stand-in inputs)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import polars as pl

from lexdpr_pipeline.assets.citation_expansion import (
    CITATION_EXPANSION_ASSETS,
    bm25_index_with_expansion,
    index_assets,
)
from lexdpr_pipeline.assets.search_index import SEARCH_INDEX_ASSETS, bm25_index
from lexdpr_pipeline.citations.table import CITATION_SCHEMA
from lexdpr_pipeline.index.bm25 import BM25Index
from lexdpr_pipeline.resources import project_resources
from lexdpr_pipeline.settings import load_settings

ARTICLES = {
    "law:001706:750": "민법 제750조(불법행위의 내용) 고의 또는 과실로 인한 위법행위로 타인에게 손해를 가한 자는 "
    "배상할 책임이 있다.",
    "law:001706:390": "민법 제390조(채무불이행과 손해배상) 채무자가 채무의 내용에 좇은 이행을 하지 아니한 때에는 "
    "배상을 청구할 수 있다.",
}
DECISIONS = [  # (prec_id, 선고일자, 판시사항, cited article)
    ("prec:101", dt.date(2012, 5, 10), "축구 경기장 관람석 추락 사고에서 운영자의 안전배려의무", "law:001706:750"),
    ("prec:102", dt.date(2020, 3, 2), "검증 기간 판결의 요트 정박 판시사항", "law:001706:750"),  # valid: never used
    ("prec:103", dt.date(2022, 7, 1), "시험 기간 판결의 등산로 낙석 판시사항", "law:001706:390"),  # test: never used
]


@dg.asset(name="raw_precedents")
def raw_precedents_stand_in() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "prec_id": [d[0] for d in DECISIONS],
            "decision_date": [d[1] for d in DECISIONS],
            "holdings": [d[2] for d in DECISIONS],
        }
    )


@dg.asset(name="precedent_citations")
def precedent_citations_stand_in() -> pl.DataFrame:
    rows = [
        {
            "prec_id": p,
            "kind": "statute",
            "groups": [],
            "raw": "민법",
            "status": "resolved",
            "target_id": t,
            "former": False,
        }
        for p, _, _, t in DECISIONS
    ]
    return pl.DataFrame(rows, schema=CITATION_SCHEMA, orient="row")


@dg.asset(name="merged_corpus")
def merged_corpus_stand_in() -> pl.DataFrame:
    docs = [*ARTICLES, "prec:101"]
    texts = [*ARTICLES.values(), "관람석 안전배려의무 판결요지"]
    return pl.DataFrame(
        {
            "passage_id": [f"{d}#0" if d.startswith("prec") else d for d in docs],
            "doc_id": docs,
            "source": ["law", "law", "prec"],
            "text": texts,
            "aliases": [[], [], []],
        },
        schema_overrides={"aliases": pl.List(pl.String)},
    )


def _settings(tmp_path: Path, weight: float):
    return load_settings(
        overrides=[
            f"paths.data_dir={tmp_path}",
            "pairs.split_mode=temporal",
            f"index.bm25_expansion_weight={weight}",
        ],
        environ={},
    )


def test_only_a_positive_weight_puts_the_expansion_into_bm25_index(tmp_path: Path) -> None:
    assert index_assets(_settings(tmp_path, 0.0)) == SEARCH_INDEX_ASSETS
    swapped = index_assets(_settings(tmp_path, 0.5))
    assert (
        bm25_index_with_expansion in swapped and bm25_index not in swapped and len(swapped) == len(SEARCH_INDEX_ASSETS)
    )
    assert bm25_index_with_expansion.key == bm25_index.key


def test_the_asset_materializes_and_bm25_finds_the_article_by_its_citing_decision(tmp_path: Path) -> None:
    settings = _settings(tmp_path, 1.0)
    result = dg.materialize(
        [
            raw_precedents_stand_in,
            precedent_citations_stand_in,
            merged_corpus_stand_in,
            *CITATION_EXPANSION_ASSETS,
            bm25_index_with_expansion,
        ],
        resources=project_resources(settings),
    )
    assert result.success
    table = pl.read_parquet(tmp_path / "tables" / "citation_expansion.parquet")
    assert table["doc_id"].to_list() == ["law:001706:750"]  # 390 is cited only by a test-period decision
    assert table["decision_ids"].to_list() == [["prec:101"]]
    assert "요트" not in table["expansion_text"][0] and table["cutoff"][0].startswith(
        "temporal: decision_date < 2019-01-01"
    )

    meta = result.asset_materializations_for_node("citation_expansion")[0].metadata
    assert meta["articles_expanded"].value == 1 and meta["statute_articles"].value == 2
    assert meta["share_expanded"].value == 0.5
    assert meta["stats"].value["excluded_by_split"] == 2
    assert "data:image/png;base64," in meta["histogram"].value and Path(meta["histogram_path"].value).is_file()
    assert meta["decisions_per_article"].value == {
        "0": 1,
        "1": 1,
        "2": 0,
        "3-4": 0,
        "5-8": 0,
        "9-16": 0,
        "17-32": 0,
        "33-64": 0,
        ">64": 0,
    }

    bm25_meta = result.asset_materializations_for_node("bm25_index")[0].metadata
    assert bm25_meta["expansion_weight"].value == 1.0 and bm25_meta["passages_with_expansion"].value == 1
    manifest = json.loads((tmp_path / "tables" / "bm25_index.json").read_text())
    index = BM25Index.load(manifest["path"])
    assert index.has_expansion and index.expansion_weight == 1.0
    assert index.search("축구 경기장 추락 사고", k=1)[0][0] == "law:001706:750"  # words only the decision uses
    assert index.with_expansion_weight(0).search("축구 경기장 추락 사고") == []
    assert index.search("요트 정박") == [] and index.search("등산로 낙석") == []  # valid/test decisions: absent
