"""Passages from statutes, admin rules and precedents; merge_corpus deduplication with aliases."""

from __future__ import annotations

import datetime as dt
import itertools
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from lexdpr_pipeline.sources.mirror import read_precedents, read_statutes
from lexdpr_pipeline.sources.records import AdminRuleArticle, Precedent, StatuteArticle, to_frame
from lexdpr_pipeline.text.chunking import WhitespaceTokenCounter
from lexdpr_pipeline.text.passages import (
    PASSAGE_SCHEMA,
    PassageConfig,
    PassageStats,
    admin_rule_passages,
    alias_map,
    content_hash,
    merge_corpus,
    precedent_passages,
    precedent_title,
    statute_passages,
    stub_reason,
)
from lexdpr_pipeline_tests.conftest import CORPUS

WS = WhitespaceTokenCounter()
CONFIG = PassageConfig(max_tokens=64, overlap=8)
LAWS = ("민법", "가사소송법", "귀속재산처리법")  # 민법 has deleted articles; 가사소송법 제10조의2 and long articles


@pytest.fixture(scope="module")
def raw_statutes(tmp_path_factory: pytest.TempPathFactory, shared_dir: Path) -> pl.DataFrame:
    """A small legalize-kr mirror slice (three law folders copied from ../shared)."""
    root = tmp_path_factory.mktemp("mirror") / "legalize-kr" / "kr"
    for law in LAWS:
        shutil.copytree(CORPUS / "legalize-kr" / "kr" / law, root / law)
    result = read_statutes(root.parents[1], progress=False)
    assert not result.skipped
    return to_frame(result.records, StatuteArticle)


@pytest.fixture(scope="module")
def law_passages(raw_statutes: pl.DataFrame) -> tuple[pl.DataFrame, PassageStats]:
    return statute_passages(raw_statutes, WS, CONFIG)


@pytest.fixture(scope="module")
def raw_precedents(shared_dir: Path) -> pl.DataFrame:
    return to_frame(read_precedents(CORPUS, max_files=60, progress=False).records, Precedent)


@pytest.fixture(scope="module")
def prec_passages(raw_precedents: pl.DataFrame) -> tuple[pl.DataFrame, PassageStats]:
    return precedent_passages(raw_precedents, WS, CONFIG)


def one(frame: pl.DataFrame, passage_id: str) -> dict[str, Any]:
    rows = frame.filter(pl.col("passage_id") == passage_id)
    assert rows.height == 1, f"{passage_id}: {rows.height} rows"
    return rows.row(0, named=True)


# --- statutes ----------------------------------------------------------------------------------------------------


def test_real_article_reads_like_a_citation(law_passages: tuple[pl.DataFrame, PassageStats]) -> None:
    frame, _ = law_passages
    row = one(frame, "law:001706:750")
    assert row["text"] == (
        "민법 제750조(불법행위의 내용) 고의 또는 과실로 인한 위법행위로 타인에게 손해를 가한 자는 그 손해를 배상할 "
        "책임이 있다."
    )
    assert row["title"] == "민법 제750조(불법행위의 내용)"
    assert (row["doc_id"], row["source"], row["section"]) == ("law:001706:750", "law", "article")
    assert (row["chunk_index"], row["n_chunks"]) == (0, 1)
    assert (row["law_id"], row["law_name"], row["law_kind"], row["article_key"]) == ("001706", "민법", "법률", "750")
    assert row["effective_date"] == dt.date(2026, 3, 17)
    assert row["n_tokens"] == len(row["text"].split())
    assert row["content_hash"] == content_hash(row["text"])
    assert row["court"] is None and row["decision_date"] is None


def test_branch_article_header(law_passages: tuple[pl.DataFrame, PassageStats], raw_statutes: pl.DataFrame) -> None:
    frame, _ = law_passages
    rows = frame.filter(pl.col("doc_id") == "law:001206:10-2").sort("chunk_index")
    assert rows.height >= 1 and set(rows["title"]) == {"가사소송법 제10조의2(기록의 열람 등)"}
    assert set(rows["article_key"]) == {"10-2"}
    body = raw_statutes.filter(pl.col("article_id") == "law:001206:10-2")["text"][0]
    assert rows["text"][0].startswith(f"가사소송법 제10조의2(기록의 열람 등) {body.split()[0]} ")
    assert one(frame, "law:001706:1008-3")["text"].startswith("민법 제1008조의3(분묘 등의 승계) 분묘에 속한")


def test_untitled_article_header_has_no_parentheses(law_passages: tuple[pl.DataFrame, PassageStats]) -> None:
    frame, _ = law_passages
    row = one(frame, "law:001596:1")  # 귀속재산처리법 제1조 has no 조문제목
    assert row["text"].startswith("귀속재산처리법 제1조 본법은 귀속재산을")
    assert row["title"] == "귀속재산처리법 제1조"


def test_deleted_articles_dropped_and_counted(
    law_passages: tuple[pl.DataFrame, PassageStats], raw_statutes: pl.DataFrame
) -> None:
    frame, stats = law_passages
    deleted = set(raw_statutes.filter(pl.col("is_deleted"))["article_id"])
    assert len(deleted) > 70 and "law:001706:1002" in deleted  # 민법 제1002조 삭제 <1990.1.13>
    assert stats.dropped == {"deleted": len(deleted)}
    assert not deleted & set(frame["doc_id"])
    assert set(frame["doc_id"]) == set(raw_statutes["article_id"]) - deleted
    assert stats.documents == raw_statutes.height
    assert stats.passages == frame.height
    per_doc = frame.group_by("doc_id").agg(pl.len().alias("chunks"))
    assert stats.chunks_per_doc == dict(per_doc.group_by("chunks").len().iter_rows())


def test_long_article_chunks_repeat_the_header(
    law_passages: tuple[pl.DataFrame, PassageStats], raw_statutes: pl.DataFrame
) -> None:
    frame, _ = law_passages
    doc = "law:001706:909-2"  # 민법 제909조의2, ~300 words
    rows = frame.filter(pl.col("doc_id") == doc).sort("chunk_index")
    n = rows.height
    assert n >= 3
    assert rows["passage_id"].to_list() == [f"{doc}#{k}" for k in range(n)]
    assert rows["chunk_index"].to_list() == list(range(n)) and set(rows["n_chunks"]) == {n}
    header = rows["title"][0]
    assert header.startswith("민법 제909조의2(") and set(rows["title"]) == {header}
    body_words = raw_statutes.filter(pl.col("article_id") == doc)["text"][0].split()
    chunks = []
    for text, n_tokens in rows.select("text", "n_tokens").iter_rows():
        assert text.startswith(header + " ")
        assert n_tokens == len(text.split()) <= CONFIG.max_tokens
        chunks.append(text[len(header) + 1 :].split())
    assert rebuild(chunks, CONFIG.overlap) == body_words


def test_passage_id_is_doc_id_unless_chunked(law_passages: tuple[pl.DataFrame, PassageStats]) -> None:
    frame, _ = law_passages
    assert frame["passage_id"].n_unique() == frame.height
    single = frame.filter(pl.col("n_chunks") == 1)
    multi = frame.filter(pl.col("n_chunks") > 1)
    assert single.height > 1000 and multi["doc_id"].n_unique() > 10
    assert (single["passage_id"] == single["doc_id"]).all()
    expected = multi.select(pl.format("{}#{}", "doc_id", "chunk_index").alias("id"))["id"]
    assert multi["passage_id"].to_list() == expected.to_list()
    assert frame["passage_id"].to_list() == sorted(frame["passage_id"].to_list())


def test_header_longer_than_budget_still_chunks() -> None:
    """A header eating the budget leaves max_tokens // 4 for the body, never zero."""
    name = " ".join(["아주"] * 20) + " 법률"
    raw = to_frame([statute("009999", name, 3, text=" ".join(f"말{i}" for i in range(40)))], StatuteArticle)
    frame, _ = statute_passages(raw, WS, PassageConfig(max_tokens=16, overlap=2))
    bodies = [t.split()[22:] for t in frame.sort("chunk_index")["text"]]  # header: 21 name words + 제3조
    assert len(bodies) == 19 and all(len(b) == 4 for b in bodies[:-1])
    assert rebuild(bodies, 2) == [f"말{i}" for i in range(40)]


def rebuild(chunks: list[list[str]], overlap: int) -> list[str]:
    """Words of overlapping chunks → the words of the text (checking each overlap is exactly ``overlap`` words)."""
    out = list(chunks[0])
    for prev, cur in itertools.pairwise(chunks):
        assert len(prev) > overlap and prev[-overlap:] == cur[:overlap], (prev, cur)
        out += cur[overlap:]
    return out


def statute(
    law_id: str, law_name: str, no: int, branch: int = 0, *, title: str = "", text: str = "", deleted: bool = False
) -> StatuteArticle:
    key = f"{no}-{branch}" if branch else str(no)
    return StatuteArticle(
        article_id=f"law:{law_id}:{key}",
        law_id=law_id,
        law_mst="1",
        law_name=law_name,
        law_kind="법률",
        ministry="법무부",
        promulgation_date=dt.date(2020, 1, 1),
        promulgation_no="1",
        effective_date=dt.date(2020, 7, 1),
        status="시행",
        article_no=no,
        article_branch=branch,
        article_key=key,
        article_title=title,
        headings=[],
        text=text,
        is_deleted=deleted,
        source="mirror",
        source_ref="kr/x/법률.md",
    )


def test_stubs_and_empty_articles_dropped() -> None:
    raw = to_frame(
        [
            statute("000001", "시험법", 1, title="목적", text="이 법은 시험을 목적으로 한다."),
            statute("000001", "시험법", 2, text="종전 제2조는 제5조로 이동 <2011.4.14>"),
            statute("000001", "시험법", 3, text="[종전 제3조의2는 제7조의3으로 이동 <2011.4.14>]"),
            statute("000001", "시험법", 4, title="정의", text="이하 같다."),  # shorter than min_body_chars
            statute("000001", "시험법", 5, text="   \n "),
            statute("000001", "시험법", 6, text="삭제 <2015.2.3>"),  # 삭제 text without the flag
            statute("000001", "시험법", 7, title="폐지", text="이 조는 남아 있다고 본다.", deleted=True),
            statute("000001", "시험법", 8, title="이동", text="이동 중인 물건에 관한 물권은 목적지 법에 따른다."),
        ],
        StatuteArticle,
    )
    frame, stats = statute_passages(raw, WS, CONFIG)
    assert frame["passage_id"].to_list() == ["law:000001:1", "law:000001:8"]
    assert stats.dropped == {"stub": 3, "empty": 1, "deleted": 2}
    assert stats.documents == 8 and stats.passages == 2


@pytest.mark.parametrize(
    ("body", "deleted", "reason"),
    [
        ("삭제 <2015.2.3>", False, "deleted"),
        ("삭제 <1990.1.13> <2005.3.31>", False, "deleted"),
        ("본문", True, "deleted"),
        ("", False, "empty"),
        ("종전 제192조의4는 제192조의7로 이동 <2011.4.14>", False, "stub"),
        ("제5조는 제7조로 이동", False, "stub"),
        ("짧다", False, "stub"),
        ("제5조에 따른 물건은 제7조로 이동한 것으로 본다.", False, None),
        ("이동 중인 물건에 관한 물권의 취득은 목적지 법에 따른다.", False, None),
        ("삭제된 조문을 인용하는 규정은 효력을 잃는다.", False, None),
    ],
)
def test_stub_reason(body: str, deleted: bool, reason: str | None) -> None:
    assert stub_reason(body, deleted, 8) == reason


def test_schema_is_passage_schema(
    law_passages: tuple[pl.DataFrame, PassageStats], prec_passages: tuple[pl.DataFrame, PassageStats]
) -> None:
    assert law_passages[0].schema == PASSAGE_SCHEMA
    assert prec_passages[0].schema == PASSAGE_SCHEMA
    empty, stats = statute_passages(to_frame([], StatuteArticle), WS, CONFIG)
    assert empty.schema == PASSAGE_SCHEMA and empty.height == 0 and stats.documents == 0


def test_admin_rule_passages() -> None:
    rule = AdminRuleArticle(
        article_id="admrul:2100000012345:3-2",
        rule_id="2100000012345",
        rule_serial="2100000012345001",
        rule_name="민원처리규정",
        rule_kind="훈령",
        ministry="법무부",
        issue_date=dt.date(2021, 1, 1),
        issue_no="1",
        effective_date=dt.date(2021, 2, 1),
        article_no=3,
        article_branch=2,
        article_key="3-2",
        article_title="접수",
        headings=[],
        text="민원은 접수한 날부터 7일 이내에 처리한다.",
        is_deleted=False,
        source="mirror",
        source_ref="x",
    )
    frame, stats = admin_rule_passages(to_frame([rule], AdminRuleArticle), WS, CONFIG)
    assert frame.schema == PASSAGE_SCHEMA
    row = frame.row(0, named=True)
    assert row["passage_id"] == row["doc_id"] == "admrul:2100000012345:3-2"
    assert row["source"] == "admrul"
    assert row["text"] == "민원처리규정 제3조의2(접수) 민원은 접수한 날부터 7일 이내에 처리한다."
    assert (row["law_id"], row["law_name"], row["law_kind"]) == ("2100000012345", "민원처리규정", "훈령")
    assert stats.documents == 1 and stats.passages == 1


# --- precedents --------------------------------------------------------------------------------------------------


def test_precedent_sections_and_ids(
    prec_passages: tuple[pl.DataFrame, PassageStats], raw_precedents: pl.DataFrame
) -> None:
    frame, stats = prec_passages
    assert stats.documents == raw_precedents.height == 60
    assert stats.passages == frame.height and frame["passage_id"].n_unique() == frame.height
    long_holdings = 0
    for rec in raw_precedents.iter_rows(named=True):
        rows = frame.filter(pl.col("doc_id") == rec["prec_id"]).sort("chunk_index")
        n = rows.height
        serial = rec["prec_id"].removeprefix("prec:")
        assert rows["passage_id"].to_list() == [f"prec:{serial}#{k}" for k in range(n)]
        assert rows["chunk_index"].to_list() == list(range(n)) and set(rows["n_chunks"]) == {n}
        assert set(rows["title"]) == {precedent_title(rec)}
        sections = rows["section"].to_list()
        # 판시사항 chunks, then 판결요지 chunks, then 판례내용 chunks; each section rebuilds its source text.
        assert sections == sorted(sections, key=["holdings", "summary", "body"].index)
        for section in ("holdings", "summary", "body"):
            part = rows.filter(pl.col("section") == section)
            source = rec[section].split()
            assert part.height == 0 if not source else part.height >= 1, section
            if source:
                words = [t.split() for t in part["text"]]
                assert rebuild(words, CONFIG.overlap) == source, (rec["prec_id"], section)
                assert part["n_tokens"].to_list() == [len(w) for w in words]
                assert max(part["n_tokens"]) <= CONFIG.max_tokens
        long_holdings += sections.count("holdings") > 1
        assert set(rows["case_no"]) == {rec["case_no"]} and set(rows["decision_date"]) == {rec["decision_date"]}
        assert rows["law_id"].is_null().all() and set(rows["source"]) == {"prec"}
    assert long_holdings >= 1  # a 판시사항 over the budget is chunked, not truncated


def test_empty_summary_counted(prec_passages: tuple[pl.DataFrame, PassageStats], raw_precedents: pl.DataFrame) -> None:
    frame, stats = prec_passages
    empty = raw_precedents.filter(pl.col("summary").str.strip_chars() == "")["prec_id"].to_list()
    assert len(empty) >= 5
    assert stats.dropped == {"empty summary": len(empty)}
    assert frame.filter(pl.col("doc_id").is_in(empty) & (pl.col("section") == "summary")).height == 0
    short = [p for p in empty if frame.filter(pl.col("doc_id") == p)["section"].to_list().count("holdings") == 1]
    assert short and set(frame.filter(pl.col("passage_id").is_in([f"{p}#1" for p in short]))["section"]) == {"body"}


def test_precedent_title() -> None:
    rec = {
        "court": "대법원",
        "decision_date": dt.date(2020, 8, 20),
        "case_no": "2017두52153",
        "judgment_type": "",
        "case_name": " 부당해고구제재심판정취소 ",
    }
    # The mirror does not say 판결 or 결정: no kind is invented.
    assert precedent_title(rec) == "대법원 2020. 8. 20. 선고 2017두52153 [부당해고구제재심판정취소]"
    assert precedent_title({**rec, "judgment_type": "결정", "decision_date": None}) == (
        "대법원 2017두52153 결정 [부당해고구제재심판정취소]"
    )


def precedent(serial: int, holdings: str = "", summary: str = "", body: str = "", case_no: str = "") -> Precedent:
    return Precedent(
        prec_id=f"prec:{serial}",
        serial_no=str(serial),
        case_no=case_no or f"2020다{serial}",
        case_name="손해배상(기)",
        court="대법원",
        court_level="대법원",
        case_type="민사",
        decision_date=dt.date(2020, 1, 2),
        judgment_type="판결",
        holdings=holdings,
        summary=summary,
        ref_articles="",
        ref_cases="",
        body=body,
        source="mirror",
        source_ref="x",
    )


def test_precedent_body_cap_and_empty_decisions() -> None:
    body = " ".join(f"이유{i}" for i in range(100))
    raw = to_frame(
        [precedent(1, "판시 사항", "판결 요지", body), precedent(2), precedent(3, holdings="판시만 있다")],
        Precedent,
    )
    config = PassageConfig(max_tokens=20, overlap=5, prec_body_max_chunks=2)
    frame, stats = precedent_passages(raw, WS, config)
    all_chunks = len(
        precedent_passages(raw, WS, PassageConfig(max_tokens=20, overlap=5))[0].filter(
            (pl.col("doc_id") == "prec:1") & (pl.col("section") == "body")
        )
    )
    assert frame.filter(pl.col("doc_id") == "prec:1")["section"].to_list() == ["holdings", "summary", "body", "body"]
    assert stats.dropped["body chunks over cap"] == all_chunks - 2 > 0
    assert "prec:2" not in set(frame["doc_id"])
    assert stats.dropped["no text at all"] == 1
    assert stats.dropped["empty summary"] == 2 and stats.dropped["empty holdings"] == 1
    assert stats.dropped["empty body"] == 2
    assert frame.filter(pl.col("doc_id") == "prec:3")["passage_id"].to_list() == ["prec:3#0"]
    assert stats.chunks_per_doc == {4: 1, 1: 1} and stats.passages == frame.height == 5


# --- merge_corpus / alias_map ------------------------------------------------------------------------------------


def passage(pid: str, source: str, text: str, section: str = "article") -> dict[str, Any]:
    doc = pid.split("#", 1)[0]
    k = int(pid.split("#", 1)[1]) if "#" in pid else 0
    return {
        "passage_id": pid,
        "doc_id": doc,
        "source": source,
        "section": section,
        "chunk_index": k,
        "n_chunks": 1,
        "title": doc,
        "text": text,
        "n_tokens": len(text.split()),
        "content_hash": content_hash(text),
    }


def frame_of(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame([{n: r.get(n) for n in PASSAGE_SCHEMA.names()} for r in rows], schema=PASSAGE_SCHEMA)


@pytest.fixture(scope="module")
def merged_synthetic() -> tuple[pl.DataFrame, dict[str, int]]:
    laws = frame_of([passage("law:000001:5", "law", "같은 조문 본문"), passage("law:000001:6", "law", "고유 조문")])
    admrul = frame_of([passage("admrul:9:5", "admrul", "같은 조문 본문")])  # sorts before law:…, yet law wins
    precs = frame_of(
        [
            passage("prec:20#0", "prec", "판시 사항 갑", "holdings"),
            passage("prec:20#1", "prec", "요지 이십", "summary"),
            passage("prec:10#0", "prec", "판시  사항\n갑", "holdings"),  # same text modulo whitespace
            passage("prec:30#0", "prec", "판시 사항 갑 ", "holdings"),
            passage("prec:30#1", "prec", "요지 삼십", "summary"),
            passage("prec:40#0", "prec", "쌍둥이 판시", "holdings"),
            passage("prec:40#1", "prec", "쌍둥이 요지", "summary"),
            passage("prec:50#0", "prec", "쌍둥이 판시", "holdings"),  # prec:50 is a full copy of prec:40
            passage("prec:50#1", "prec", "쌍둥이 요지", "summary"),
        ]
    )
    return merge_corpus([laws, admrul, precs])


def test_merge_drops_identical_text_and_keeps_aliases(merged_synthetic: tuple[pl.DataFrame, dict[str, int]]) -> None:
    merged, stats = merged_synthetic
    assert stats == {"input_passages": 12, "kept": 7, "duplicates_dropped": 5}
    aliases = dict(merged.select("passage_id", "aliases").iter_rows())
    assert aliases == {
        "law:000001:5": ["admrul:9:5"],
        "law:000001:6": [],
        "prec:10#0": ["prec:20#0", "prec:30#0"],
        "prec:20#1": [],
        "prec:30#1": [],
        "prec:40#0": ["prec:50#0"],
        "prec:40#1": ["prec:50#1"],
    }
    assert merged["passage_id"].to_list() == sorted(aliases)
    assert merged["content_hash"].n_unique() == merged.height
    assert merged.schema == pl.Schema({**PASSAGE_SCHEMA, "aliases": pl.List(pl.String())})
    assert one(merged, "law:000001:5")["source"] == "law"


def test_alias_map(merged_synthetic: tuple[pl.DataFrame, dict[str, int]]) -> None:
    merged, _ = merged_synthetic
    assert alias_map(merged) == {
        "admrul:9:5": "law:000001:5",  # an unchunked article: its passage id is its doc id
        "prec:20#0": "prec:10#0",
        "prec:30#0": "prec:10#0",
        "prec:50#0": "prec:40#0",
        "prec:50#1": "prec:40#1",
        "prec:50": "prec:40#0",  # no passage of prec:50 survived: the document maps to a kept passage
        # prec:20 and prec:30 keep their summaries, so they are not mapped as documents
    }


def test_merge_on_real_passages(
    law_passages: tuple[pl.DataFrame, PassageStats], prec_passages: tuple[pl.DataFrame, PassageStats]
) -> None:
    inputs = pl.concat([law_passages[0], prec_passages[0]])
    merged, stats = merge_corpus([law_passages[0], prec_passages[0]])
    assert stats["input_passages"] == inputs.height and stats["kept"] == merged.height
    assert stats["duplicates_dropped"] == inputs.height - inputs["content_hash"].n_unique() > 0
    dropped = [a for al in merged["aliases"] for a in al]
    assert sorted(merged["passage_id"].to_list() + dropped) == sorted(inputs["passage_id"].to_list())
    texts = dict(inputs.select("passage_id", "text").iter_rows())
    mapping = alias_map(merged)
    for alias in dropped:
        assert content_hash(texts[alias]) == content_hash(texts[mapping[alias]])
    # 89스11 is in the mirror twice (89스11.md = prec:189225, 89스11_601763.md = prec:601763), word for word.
    assert "prec:601763" not in set(merged["doc_id"])
    assert mapping["prec:601763"] == "prec:189225#0"
    assert {mapping[f"prec:601763#{k}"] for k in range(3)} == {f"prec:189225#{k}" for k in range(3)}


@pytest.mark.parametrize("kwargs", [{"max_tokens": 8}, {"max_tokens": 64, "overlap": 40}, {"prec_body_max_chunks": -1}])
def test_passage_config_rejects_nonsense(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="text\\."):
        PassageConfig(**kwargs)
