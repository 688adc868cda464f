"""BM25Index on a real slice of the statute corpus: finds articles by heading, exclusion, save/load, tokenizer guard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lexdpr_pipeline.index.bm25 import (
    IDS_FILE,
    META_FILE,
    BM25Index,
    BM25Params,
    TokenizerMismatchError,
)
from lexdpr_pipeline.sources.records import StatuteArticle
from lexdpr_pipeline.text.korean import KoreanTokenizer, TokenizerConfig

LAWS = ("민법", "형법", "이자제한법", "가등기담보 등에 관한 법률")


def passage(a: StatuteArticle) -> str:
    label = f"제{a.article_no}조" + (f"의{a.article_branch}" if a.article_branch else "")
    return f"{a.law_name} {label}" + (f"({a.article_title})" if a.article_title else "") + f" {a.text}"


@pytest.fixture(scope="module")
def articles(shared_dir: Path) -> list[StatuteArticle]:
    from lexdpr_pipeline.sources.mirror import read_statutes
    from lexdpr_pipeline_tests.conftest import CORPUS

    records = [a for a in read_statutes(CORPUS, progress=False).records if a.law_name in LAWS and not a.is_deleted]
    assert {a.law_name for a in records} == set(LAWS)
    return records


@pytest.fixture(scope="module")
def corpus_tokens(articles: list[StatuteArticle]) -> list[list[str]]:
    return KoreanTokenizer().tokenize_many([passage(a) for a in articles])


@pytest.fixture(scope="module")
def index(articles: list[StatuteArticle], corpus_tokens: list[list[str]]) -> BM25Index:
    return BM25Index.from_tokens([a.article_id for a in articles], corpus_tokens, tokenizer=KoreanTokenizer())


def article_id(articles: list[StatuteArticle], law: str, key: str) -> str:
    return next(a.article_id for a in articles if a.law_name == law and a.article_key == key)


def test_finds_article_by_heading(index: BM25Index, articles: list[StatuteArticle]) -> None:
    hits = index.search("불법행위의 내용 손해배상", k=3)
    assert article_id(articles, "민법", "750") in [doc for doc, _ in hits]


@pytest.mark.parametrize(
    ("query", "law", "key"),
    [
        ("민법 사용자의 배상책임", "민법", "756"),
        ("형법 정당방위", "형법", "21"),
        ("이자의 최고한도", "이자제한법", "2"),
        ("민법 제750조", "민법", "750"),  # the citation header is in the passage, as one token
    ],
)
def test_finds_other_articles(index: BM25Index, articles: list[StatuteArticle], query: str, law: str, key: str) -> None:
    hits = [doc for doc, _ in index.search(query, k=3)]
    assert article_id(articles, law, key) in hits


def test_scores_sorted_and_bounded(index: BM25Index) -> None:
    hits = index.search("손해배상 청구", k=20)
    assert len(hits) == 20
    scores = [s for _, s in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(s > 0 for s in scores)
    assert len({doc for doc, _ in hits}) == 20


def test_no_match_returns_nothing(index: BM25Index) -> None:
    assert index.search("", k=5) == []
    assert index.search("😀 !!!", k=5) == []
    assert index.search("qwertyzxcv", k=5) == []  # tokens not in the vocabulary
    assert index.search("손해배상", k=0) == []


def test_rare_term_returns_only_matching_docs(index: BM25Index, corpus_tokens: list[list[str]]) -> None:
    n_with = sum("정당방위" in toks for toks in corpus_tokens)
    hits = index.search("정당방위", k=50)
    assert 0 < len(hits) == n_with < 50


def test_k_larger_than_corpus(index: BM25Index) -> None:
    hits = index.search("법", k=len(index) + 100)
    assert 0 < len(hits) <= len(index)


def test_exclusion(index: BM25Index, articles: list[StatuteArticle]) -> None:
    target = article_id(articles, "민법", "750")
    query = "불법행위의 내용 손해배상"
    base = index.search_many([query], k=10)[0]
    assert target in [d for d, _ in base]
    excluded = {target, base[1][0]}
    hits = index.search_many([query, query], k=10, exclude=[excluded, set()])
    assert len(hits[0]) == 10
    assert not excluded & {d for d, _ in hits[0]}
    assert hits[1] == base
    # what remains keeps the original order
    assert [d for d, _ in hits[0]] == [d for d, _ in index.search(query, k=12) if d not in excluded][:10]
    single = index.search(query, k=10, exclude={target})
    assert len(single) == 10 and target not in dict(single)
    with pytest.raises(ValueError):
        index.search_many([query], k=5, exclude=[set(), set()])


def test_search_many_matches_search(index: BM25Index) -> None:
    queries = ["불법행위 손해배상", "", "이자 최고한도", "가등기 담보 청산금", "형법 절도"]
    many = index.search_many(queries, k=7)
    assert many == [index.search(q, k=7) for q in queries]
    assert index.search_many(queries, k=7, n_threads=2) == many


def test_save_load_round_trip(index: BM25Index, tmp_path: Path) -> None:
    target = tmp_path / "bm25"
    index.save(target)
    names = {p.name for p in target.iterdir()}
    assert {META_FILE, IDS_FILE, "vocab.index.json", "params.index.json"} <= names
    assert not any(name.endswith(".pkl") or name.endswith(".pickle") for name in names)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left behind

    queries = ["불법행위의 내용 손해배상", "형법 정당방위", "이자제한법 이자의 최고한도", "제750조"]
    expected = index.search_many(queries, k=10)
    for mmap in (False, True):
        loaded = BM25Index.load(target, mmap=mmap)
        assert loaded.ids == index.ids
        assert loaded.params == index.params
        assert loaded.tokenizer.config == index.tokenizer.config
        assert loaded.search_many(queries, k=10) == expected

    # saving again replaces the old index atomically
    index.save(target)
    assert BM25Index.load(target).search_many(queries, k=10) == expected


def test_save_refuses_to_clobber_other_folders(index: BM25Index, tmp_path: Path) -> None:
    other = tmp_path / "not_an_index"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        index.save(other)
    assert (other / "precious.txt").read_text() == "keep me"


def test_mismatched_tokenizer_raises(index: BM25Index, tmp_path: Path) -> None:
    target = index.save(tmp_path / "bm25")
    with pytest.raises(TokenizerMismatchError):
        BM25Index.load(target, tokenizer=KoreanTokenizer(TokenizerConfig(pos="nouns_verbs")))
    with pytest.raises(TokenizerMismatchError):
        BM25Index.load(target, tokenizer=KoreanTokenizer(TokenizerConfig(compounds=False)))
    assert BM25Index.load(target, tokenizer=KoreanTokenizer(TokenizerConfig())).tokenizer.config == TokenizerConfig()
    # a stored signature from another kiwipiepy version is also refused
    meta_path = target / META_FILE
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["tokenizer"]["kiwipiepy"] = "0.0.1"
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(TokenizerMismatchError, match="kiwipiepy"):
        BM25Index.load(target)


def test_damaged_or_missing_index(index: BM25Index, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        BM25Index.load(tmp_path / "nowhere")
    target = index.save(tmp_path / "bm25")
    (target / IDS_FILE).write_bytes(b"garbage")
    with pytest.raises(ValueError, match="damaged"):
        BM25Index.load(target)


def test_build_from_texts_and_params() -> None:
    ids = ["a", "b", "c", "d"]
    texts = [
        "민법 제750조(불법행위의 내용) 고의 또는 과실로 인한 위법행위로 타인에게 손해를 가한 자는 배상할 책임이 있다.",
        "대법원 1991. 12. 10. 선고 91다41118 판결",
        "",
        "형법 제21조(정당방위) 현재의 부당한 침해로부터 자기의 법익을 방위하기 위하여 한 행위는 벌하지 아니한다.",
    ]
    for method in ("lucene", "robertson", "atire", "bm25l", "bm25+"):
        idx = BM25Index.build(ids, texts, params=BM25Params(k1=0.9, b=0.4, method=method))  # type: ignore[arg-type]
        assert idx.search("91다41118", k=2)[0][0] == "b"
        assert [d for d, _ in idx.search("정당방위", k=4)] == ["d"]  # only documents sharing a term
        assert idx.search("판결 불법행위", k=4, exclude={"a"})[0][0] == "b"


def test_bad_corpus_rejected() -> None:
    tokenizer = KoreanTokenizer()
    with pytest.raises(ValueError, match="unique"):
        BM25Index.from_tokens(["a", "a"], [["x"], ["y"]], tokenizer=tokenizer)
    with pytest.raises(ValueError):
        BM25Index.from_tokens(["a"], [["x"], ["y"]], tokenizer=tokenizer)
    with pytest.raises(ValueError):
        BM25Index.from_tokens([], [], tokenizer=tokenizer)
    with pytest.raises(ValueError):
        BM25Index.from_tokens(["a"], [[]], tokenizer=tokenizer)
    with pytest.raises(ValueError):
        BM25Params(method="okapi")  # type: ignore[arg-type]
