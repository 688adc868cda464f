"""BM25's citation-expansion field: weight 0 is exactly today's BM25; a weight adds w·bm25(expansion); persistence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lexdpr_pipeline.index.bm25 import EXPANSION_DIR, META_FILE, BM25Index, BM25Params, corpus_key
from lexdpr_pipeline.sources.records import StatuteArticle
from lexdpr_pipeline.text.korean import KoreanTokenizer

LAWS = ("이자제한법", "가등기담보 등에 관한 법률", "국가배상법")
# Words of a 판시사항 that none of these articles uses: only the expansion can match them.
EXPANSION_ONLY = "축구 경기장 관람석 추락 사고"
QUERIES = ["이자의 최고한도", "담보가등기 청산금", "국가배상 손해배상 책임", "공무원 직무 위자료", "없는말없는말"]


@pytest.fixture(scope="module")
def docs(shared_dir: Path) -> tuple[list[str], list[str], list[str]]:
    """(ids, texts, expansions) of a small real statute slice; one article gets an expansion text."""
    from lexdpr_pipeline.sources.mirror import read_statutes
    from lexdpr_pipeline_tests.conftest import CORPUS

    records: list[StatuteArticle] = [
        a for a in read_statutes(CORPUS, progress=False).records if a.law_name in LAWS and not a.is_deleted
    ]
    ids = [a.article_id for a in records]
    texts = [f"{a.law_name} {a.article_title or ''} {a.text}" for a in records]
    expansions = ["" for _ in ids]
    expansions[0] = EXPANSION_ONLY
    expansions[1] = "담보가등기 청산금 지급"  # also in article texts: both fields score
    return ids, texts, expansions


@pytest.fixture(scope="module")
def plain(docs) -> BM25Index:
    ids, texts, _ = docs
    return BM25Index.build(ids, texts)


@pytest.fixture(scope="module")
def expanded(docs) -> BM25Index:
    ids, texts, expansions = docs
    return BM25Index.build(ids, texts, expansions=expansions, expansion_weight=0.5)


def test_weight_zero_equals_todays_scores_exactly(docs, plain: BM25Index, expanded: BM25Index) -> None:
    ids, texts, expansions = docs
    today = plain.search_many(QUERIES, k=20)
    assert expanded.with_expansion_weight(0).search_many(QUERIES, k=20) == today
    built_at_zero = BM25Index.build(ids, texts, expansions=expansions, expansion_weight=0.0)
    assert built_at_zero.search_many(QUERIES, k=20) == today
    assert any(today) and not plain.has_expansion


def test_a_query_matching_only_the_expansion_finds_the_article(docs, plain: BM25Index, expanded) -> None:
    ids, _, _ = docs
    assert plain.search(EXPANSION_ONLY, k=20) == []  # no article shares a term with it
    assert expanded.search(EXPANSION_ONLY, k=1)[0][0] == ids[0]
    assert expanded.search(EXPANSION_ONLY, k=5, exclude={ids[0]}) == []  # exclusions hold in the two-field path


def test_the_score_is_text_plus_weight_times_expansion(docs, plain: BM25Index, expanded: BM25Index) -> None:
    ids, _, expansions = docs
    tokenizer = plain.tokenizer
    only_expansion = BM25Index.from_tokens(ids, tokenizer.tokenize_many(expansions), tokenizer=tokenizer)
    query = "담보가등기 청산금"
    text_scores = dict(plain.search(query, k=len(ids)))
    expansion_scores = dict(only_expansion.search(query, k=len(ids)))
    for weight in (0.5, 2.0):
        hits = expanded.with_expansion_weight(weight).search(query, k=10)
        for doc, score in hits:
            want = text_scores.get(doc, 0.0) + weight * expansion_scores.get(doc, 0.0)
            assert score == pytest.approx(want, rel=1e-5)
        assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    everything = dict(expanded.with_expansion_weight(2.0).search(query, k=len(ids)))
    assert everything[ids[1]] == pytest.approx(text_scores.get(ids[1], 0.0) + 2.0 * expansion_scores[ids[1]], rel=1e-5)
    assert expansion_scores[ids[1]] > 0


def test_save_and_load_keep_the_field_and_its_weight(tmp_path: Path, plain, expanded: BM25Index) -> None:
    expanded.save(tmp_path / "idx")
    meta = json.loads((tmp_path / "idx" / META_FILE).read_text())
    assert meta["format_version"] == 2 and meta["expansion"]["weight"] == 0.5
    assert (tmp_path / "idx" / EXPANSION_DIR).is_dir()
    loaded = BM25Index.load(tmp_path / "idx")
    assert loaded.has_expansion and loaded.expansion_weight == 0.5
    assert loaded.search_many(QUERIES, k=10) == expanded.search_many(QUERIES, k=10)
    assert BM25Index.load(tmp_path / "idx", expansion_weight=0).search_many(QUERIES, k=10) == plain.search_many(
        QUERIES, k=10
    )
    damaged = next(p for p in (tmp_path / "idx" / EXPANSION_DIR).iterdir() if p.suffix == ".npy")
    damaged.write_bytes(damaged.read_bytes()[:-8])
    with pytest.raises(ValueError, match="damaged"):
        BM25Index.load(tmp_path / "idx")


def test_plain_index_stays_format_1_and_refuses_a_weight(tmp_path: Path, plain: BM25Index) -> None:
    plain.save(tmp_path / "plain")
    meta = json.loads((tmp_path / "plain" / META_FILE).read_text())
    assert meta["format_version"] == 1 and "expansion" not in meta
    with pytest.raises(ValueError, match="without an expansion field"):
        plain.with_expansion_weight(0.3)


def test_no_expansion_token_at_all_means_no_field(docs) -> None:
    ids, texts, _ = docs
    index = BM25Index.build(ids[:20], texts[:20], expansions=[""] * 20, expansion_weight=1.0)
    assert not index.has_expansion and index.expansion_weight == 0.0


def test_the_content_key_without_expansion_is_unchanged(docs) -> None:
    ids, texts, expansions = docs
    corpus = pl.DataFrame({"passage_id": ids, "text": texts})
    tok, params = KoreanTokenizer(), BM25Params()
    key = corpus_key(corpus, tok, params)
    assert corpus_key(corpus, tok, params, expansions=None, expansion_weight=0.7) == key
    with_field = corpus_key(corpus, tok, params, expansions=expansions, expansion_weight=0.5)
    assert with_field != key
    assert corpus_key(corpus, tok, params, expansions=expansions, expansion_weight=1.0) != with_field
    assert np.unique([key, with_field]).size == 2


def test_an_expansion_added_to_a_built_index_equals_building_both_fields(docs, plain: BM25Index, expanded) -> None:
    """with_expansion_texts (the text field reused, only the expansions tokenized) scores exactly like an index built
    with both fields; all-empty expansions leave a plain index."""
    _, _, expansions = docs
    added = plain.with_expansion_texts(expansions, 0.5)
    assert added.has_expansion and added.expansion_weight == 0.5
    assert added.search_many([*QUERIES, EXPANSION_ONLY], k=20) == expanded.search_many([*QUERIES, EXPANSION_ONLY], k=20)
    assert not plain.with_expansion_texts(["" for _ in expansions]).has_expansion
    with pytest.raises(ValueError, match="expansion texts"):
        plain.with_expansion_texts(expansions[:-1])
