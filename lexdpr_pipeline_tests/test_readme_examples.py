"""Every ``lex-dpr search "…"`` example in README.md and scripts/main.sh finds its answer in the demo slice.

The demo slice is read as the main job reads it (configs/demo.yaml's ``ingest`` settings, the library readers), turned
into passages and a BM25 index with the library, and each example is searched in BM25 mode with its own filters. Fast
and model-free: passages are cut with the whitespace token counter instead of the base model's tokenizer (which cuts
long texts into a few more chunks; the results below hold with both). An example without an entry in ``EXPECTED``
fails the test, so a new example in the README comes with its expected answer.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from lexdpr_pipeline.citations.statute_refs import parse_statute_refs
from lexdpr_pipeline.index.bm25 import BM25Index
from lexdpr_pipeline.search.engine import SearchEngine, SearchFilters, SearchHit
from lexdpr_pipeline.settings import SearchSettings, Settings, load_settings
from lexdpr_pipeline.sources.mirror import read_precedents, read_statutes
from lexdpr_pipeline.sources.records import Precedent, StatuteArticle, to_frame
from lexdpr_pipeline.text.chunking import token_counter
from lexdpr_pipeline.text.korean import KoreanTokenizer
from lexdpr_pipeline.text.passages import PassageConfig, merge_corpus, precedent_passages, statute_passages
from lexdpr_pipeline_tests.conftest import CORPUS, REPO_ROOT

DEMO_CONFIG = REPO_ROOT / "configs" / "demo.yaml"
EXAMPLE_FILES = ("README.md", "scripts/main.sh")
_EXAMPLE = re.compile(r"""lex-dpr\s+search\s+(["'])(?P<query>.+?)\1(?P<options>[^\n#]*)""")
TOP = 5


@dataclass(frozen=True)
class Example:
    where: str  # file:line
    query: str
    options: str


@dataclass
class DemoSlice:
    engine: SearchEngine
    statutes: pl.DataFrame
    precedents: pl.DataFrame

    def article_id(self, law_name: str, key: str) -> str:
        rows = self.statutes.filter((pl.col("law_name") == law_name) & (pl.col("article_key") == key))
        assert rows.height == 1, f"{law_name} 제{key}조 is not in the demo slice"
        return rows["article_id"][0]

    def precedent(self, doc_id: str) -> dict | None:
        rows = self.precedents.filter(pl.col("prec_id") == doc_id)
        return rows.row(0, named=True) if rows.height else None


def find_examples() -> list[Example]:
    found = []
    for name in EXAMPLE_FILES:
        for n, line in enumerate((REPO_ROOT / name).read_text(encoding="utf-8").splitlines(), 1):
            found += [Example(f"{name}:{n}", m["query"], m["options"]) for m in _EXAMPLE.finditer(line)]
    return found


def _options_parser() -> argparse.ArgumentParser:
    """The single-query options of ``lex-dpr search`` (an option missing here fails the example, on purpose)."""
    parser = argparse.ArgumentParser(prog="lex-dpr search", add_help=False, exit_on_error=False)
    parser.add_argument("--top-k", "-k", type=int, default=10)
    parser.add_argument("--mode")
    parser.add_argument("--threshold", type=float)
    parser.add_argument("--json", action="store_true")
    for flag in ("--source", "--law", "--law-id", "--court", "--case-type"):
        parser.add_argument(flag, action="append")
    parser.add_argument("--from", dest="date_from", type=dt.date.fromisoformat)
    parser.add_argument("--to", dest="date_to", type=dt.date.fromisoformat)
    return parser


def example_filters(options: str) -> SearchFilters:
    args = _options_parser().parse_args(shlex.split(options))
    return SearchFilters(
        sources=args.source,
        law_names=args.law,
        law_ids=args.law_id,
        courts=args.court,
        case_types=args.case_type,
        date_from=args.date_from,
        date_to=args.date_to,
    )


def _cites(rec: dict, law: str, article_no: int) -> bool:
    return any(r.law_name == law and r.article_no == article_no for r in parse_statute_refs(rec["ref_articles"] or ""))


def is_article(law: str, key: str) -> Callable[[DemoSlice, SearchHit], bool]:
    def check(demo: DemoSlice, hit: SearchHit) -> bool:
        return hit.doc_id == demo.article_id(law, key)

    check.__doc__ = f"{law} 제{key}조"
    return check


def supreme_court_tort_since_2015(demo: DemoSlice, hit: SearchHit) -> bool:
    """a 대법원 decision from 2015 on that cites 민법 제750조 (불법행위)"""
    rec = demo.precedent(hit.doc_id)
    return (
        rec is not None
        and rec["court"] == "대법원"
        and rec["decision_date"] is not None
        and rec["decision_date"] >= dt.date(2015, 1, 1)
        and _cites(rec, "민법", 750)
    )


#: query → what must be among its top 5 hits.
EXPECTED: dict[str, Callable[[DemoSlice, SearchHit], bool]] = {
    "불법행위로 인한 손해배상": supreme_court_tort_since_2015,
    "민법 제750조": is_article("민법", "750"),
    "불법행위로 타인의 물건을 손괴한 경우 손해배상 책임": is_article("민법", "750"),
}


def _settings() -> Settings:
    return load_settings(config_file=DEMO_CONFIG, environ={})


@pytest.fixture(scope="module")
def demo(shared_dir: Path) -> DemoSlice:
    settings = _settings()
    ingest, text = settings.ingest, settings.text
    statutes = read_statutes(CORPUS, max_files=ingest.max_items, include=ingest.mirror_include, progress=False)
    precedents = read_precedents(CORPUS, max_files=ingest.max_items, include=ingest.mirror_include, progress=False)
    assert not statutes.skipped and not precedents.skipped
    config = PassageConfig(
        max_tokens=text.max_tokens,
        overlap=text.overlap,
        min_body_chars=text.min_body_chars,
        prec_body_max_chunks=text.prec_body_max_chunks,
    )
    counter = token_counter("whitespace", None)
    statute_frame, precedent_frame = to_frame(statutes.records, StatuteArticle), to_frame(precedents.records, Precedent)
    law, _ = statute_passages(statute_frame, counter, config)
    prec, _ = precedent_passages(precedent_frame, counter, config)
    corpus, _ = merge_corpus([law, prec])
    bm25 = BM25Index.build(corpus["passage_id"].to_list(), corpus["text"].to_list(), tokenizer=KoreanTokenizer())
    engine = SearchEngine(corpus, model=None, dense=None, bm25=bm25, settings=SearchSettings())
    return DemoSlice(engine, statute_frame, precedent_frame)


def test_examples_are_found_in_the_docs() -> None:
    queries = {e.query for e in find_examples()}
    # The README's statute and precedent examples and the main job's sample search, at least.
    assert {"민법 제750조", "불법행위로 인한 손해배상"} <= queries and len(queries) >= 3


def test_demo_slice_is_chosen_by_name_and_every_pattern_selects_a_file(shared_dir: Path) -> None:
    from lexdpr_pipeline.sources.mirror.precedents import precedent_files
    from lexdpr_pipeline.sources.mirror.select import unmatched_patterns
    from lexdpr_pipeline.sources.mirror.statutes import statute_files

    include = _settings().ingest.mirror_include
    assert include and "민법" in include
    roots = (CORPUS / "legalize-kr", CORPUS / "precedent-kr")
    paths = [
        p.relative_to(root).as_posix()
        for root, files in zip(roots, (statute_files, precedent_files), strict=True)
        for p in files(root)
    ]
    assert unmatched_patterns(paths, include) == []  # a typo would silently shrink the demo


@pytest.mark.parametrize("example", find_examples(), ids=lambda e: e.where)
def test_readme_search_example_finds_its_answer(demo: DemoSlice, example: Example) -> None:
    expected = EXPECTED.get(example.query)
    assert expected is not None, (
        f"{example.where}: no expected answer for the search example {example.query!r}; add one to EXPECTED "
        "(and make sure configs/demo.yaml's ingest.mirror_include holds it)"
    )
    hits = demo.engine.search(example.query, top_k=TOP, mode="bm25", filters=example_filters(example.options))
    found = [(h.doc_id, h.title) for h in hits]
    assert any(expected(demo, h) for h in hits), (
        f"{example.where}: {expected.__doc__} is not in the top {TOP} of {example.query!r}{example.options}: {found}"
    )
