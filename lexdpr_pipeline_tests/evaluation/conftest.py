"""A hand-made miniature of merged_corpus + dataset_splits (real-looking Korean text, ~20 passages) for the
evaluation tests: statute articles, three decisions with 판시사항 (#0) / 판결요지 (#1) / 판례내용 (#2), and filler."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from lexdpr_pipeline.sources.ids import doc_id_of
from lexdpr_pipeline.text.passages import PASSAGE_SCHEMA, content_hash

HOLDINGS_10 = "불법행위로 인한 손해배상청구권의 성립 요건으로서 고의 또는 과실의 의미"
HOLDINGS_20 = "채무불이행으로 인한 손해배상의 범위와 통상손해의 판단 기준"
HOLDINGS_30 = "선량한 풍속 기타 사회질서에 위반한 법률행위의 무효 여부"

TEXTS: dict[str, str] = {
    "law:1:750": "민법 제750조(불법행위의 내용) 고의 또는 과실로 인한 위법행위로 타인에게 손해를 가한 자는 그 손해를 "
    "배상할 책임이 있다.",
    "law:1:751": "민법 제751조(재산 이외의 손해의 배상) 타인의 신체, 자유 또는 명예를 해하거나 기타 정신상고통을 가한 "
    "자는 재산 이외의 손해에 대하여도 배상할 책임이 있다.",
    "law:1:390": "민법 제390조(채무불이행과 손해배상) 채무자가 채무의 내용에 좇은 이행을 하지 아니한 때에는 채권자는 "
    "손해배상을 청구할 수 있다.",
    "law:1:393": "민법 제393조(손해배상의 범위) 채무불이행으로 인한 손해배상은 통상의 손해를 그 한도로 한다.",
    "law:1:103": "민법 제103조(반사회질서의 법률행위) 선량한 풍속 기타 사회질서에 위반한 사항을 내용으로 하는 "
    "법률행위는 무효로 한다.",
    "prec:10#0": HOLDINGS_10,
    "prec:10#1": "고의 또는 과실로 인한 위법행위로 타인에게 손해를 가한 경우 가해자는 불법행위 책임을 진다.",
    "prec:10#2": "원고는 피고의 불법행위로 인한 손해배상을 청구하였고 원심은 피고의 과실을 인정하였다.",
    "prec:20#0": HOLDINGS_20,
    "prec:20#1": "채무불이행으로 인한 손해배상은 통상손해를 한도로 하고 특별손해는 예견가능성이 있을 때 배상한다.",
    "prec:20#2": "피고는 계약상 채무를 이행하지 아니하였으므로 원고에게 손해를 배상할 의무가 있다.",
    "prec:30#0": HOLDINGS_30,
    "prec:30#1": "반사회질서의 법률행위는 당사자 사이의 약정이 있더라도 무효이다.",
    "prec:30#2": "이 사건 약정은 도박 자금을 대여하기 위한 것으로서 사회질서에 반한다.",
    "prec:40#0": "부동산 소유권이전등기 말소청구의 소에서 취득시효 완성 여부",
    "prec:41#0": "근로자의 해고에 정당한 이유가 있는지 판단하는 기준",
    "prec:42#0": "상속재산 분할 협의의 효력과 사해행위 취소",
    "prec:43#0": "행정처분 취소소송의 제소기간 기산점",
    "prec:44#0": "임대차보증금 반환채권의 양도와 대항력",
    "prec:45#0": "교통사고 운전자의 주의의무 위반과 업무상과실치상",
}


def passage_row(pid: str, text: str) -> dict[str, Any]:
    doc = doc_id_of(pid)
    k = int(pid.split("#")[1]) if "#" in pid else 0
    return {
        "passage_id": pid,
        "doc_id": doc,
        "source": doc.split(":", 1)[0],
        "section": "article" if doc.startswith("law") else ("holdings", "summary", "body")[k],
        "chunk_index": k,
        "n_chunks": 1,
        "title": doc,
        "text": text,
        "n_tokens": len(text.split()),
        "content_hash": content_hash(text),
    }


def corpus_frame(texts: dict[str, str] = TEXTS) -> pl.DataFrame:
    rows = [passage_row(p, t) for p, t in texts.items()]
    return pl.DataFrame(rows, schema=PASSAGE_SCHEMA, orient="row").with_columns(
        pl.lit(None, pl.List(pl.String)).alias("aliases")
    )


def query(qid: str, qtype: str, text: str, positives: list[str], group: str, qpid: str | None, split: str) -> dict:
    return {
        "query_id": qid,
        "query_type": qtype,
        "query_text": text,
        "group_id": group,
        "group_date": None,
        "query_passage_id": qpid,
        "positive_ids": positives,
        "positive_doc_ids": sorted({doc_id_of(p) for p in positives}),
        "former_citation": False,
        "split": split,
        "negative_ids": [],
    }


QUERIES = [
    query("q:law:1:750", "law", "민법 불법행위의 내용", ["law:1:750"], "law:1:750", None, "test"),
    query("q:law:1:103", "law", "민법 반사회질서의 법률행위", ["law:1:103"], "law:1:103", None, "test"),
    query("q:prec:10", "prec", HOLDINGS_10, ["prec:10#1"], "prec:10", "prec:10#0", "test"),
    query("q:cross_law:10", "cross_law", HOLDINGS_10, ["law:1:750"], "prec:10", "prec:10#0", "test"),
    query("q:cross_prec:20", "cross_prec", HOLDINGS_20, ["prec:10#1", "prec:30#1"], "prec:20", "prec:20#0", "test"),
    query("q:law:1:390", "law", "민법 채무불이행과 손해배상", ["law:1:390"], "law:1:390", None, "valid"),
    query("q:law:1:393", "law", "민법 손해배상의 범위", ["law:1:393"], "law:1:393", None, "valid"),
    query("q:prec:20", "prec", HOLDINGS_20, ["prec:20#1"], "prec:20", "prec:20#0", "valid"),
    query("q:cross_law:30", "cross_law", HOLDINGS_30, ["law:1:103"], "prec:30", "prec:30#0", "valid"),
    query("q:law:1:751", "law", "민법 재산 이외의 손해의 배상", ["law:1:751"], "law:1:751", None, "train"),
    query("q:prec:30", "prec", HOLDINGS_30, ["prec:30#1"], "prec:30", "prec:30#0", "train"),
]


def splits_frame(rows: list[dict] = QUERIES) -> pl.DataFrame:
    schema = {
        "query_id": pl.String,
        "query_type": pl.String,
        "query_text": pl.String,
        "group_id": pl.String,
        "group_date": pl.Date,
        "query_passage_id": pl.String,
        "positive_ids": pl.List(pl.String),
        "positive_doc_ids": pl.List(pl.String),
        "former_citation": pl.Boolean,
        "split": pl.String,
        "negative_ids": pl.List(pl.String),
    }
    return pl.DataFrame(rows, schema=schema, orient="row")


@pytest.fixture(scope="session")
def mini_corpus() -> pl.DataFrame:
    return corpus_frame()


@pytest.fixture(scope="session")
def mini_splits() -> pl.DataFrame:
    return splits_frame()
