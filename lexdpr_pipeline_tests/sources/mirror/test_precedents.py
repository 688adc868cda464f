"""precedent-kr reader: the whole ../shared sample, then small inline snippets."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from lexdpr_pipeline.sources.mirror import MirrorFormatError, parse_precedent_markdown
from lexdpr_pipeline.sources.records import Precedent, to_frame
from lexdpr_pipeline_tests.sources.mirror.conftest import TimedRead


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("*/*/*.md"))


def _heading_counts(root: Path) -> Counter[str]:
    """How many files have each ``## …`` section heading, counted straight from the text."""
    counts: Counter[str] = Counter()
    for path in _files(root):
        counts.update(set(re.findall(r"^## (\S+)$", path.read_text(encoding="utf-8"), re.M)))
    return counts


def test_reads_all_8000_decisions(precedents_read: TimedRead[Precedent], precedent_mirror: Path) -> None:
    result = precedents_read.result
    assert result.skipped == []
    assert len(result.records) == 8_000 == len(_files(precedent_mirror))
    assert len({r.prec_id for r in result.records}) == 8_000
    assert Counter(r.court_level for r in result.records) == {"대법원": 6_737, "하급심": 1_263}
    # three files spell 법원명 as ' 대법원' (quoted, with a leading space): values are stripped
    assert Counter(r.court for r in result.records if r.court_level == "대법원") == {"대법원": 6_737}
    for r in result.records:
        assert r.case_no and r.court and r.case_name, r.source_ref
        assert r.prec_id == f"prec:{int(r.serial_no)}"
        case_type, level, _ = r.source_ref.split("/")
        assert (r.case_type, r.court_level) == (case_type, level)
        assert r.body
        assert r.source == "mirror"
        assert r.decision_date is not None


def test_section_presence_matches_the_files(precedents_read: TimedRead[Precedent], precedent_mirror: Path) -> None:
    records = precedents_read.result.records
    counts = _heading_counts(precedent_mirror)
    present = {
        "판시사항": sum(bool(r.holdings) for r in records),
        "판결요지": sum(bool(r.summary) for r in records),
        "참조조문": sum(bool(r.ref_articles) for r in records),
        "참조판례": sum(bool(r.ref_cases) for r in records),
        "판례내용": sum(bool(r.body) for r in records),
    }
    assert present == {name: counts[name] for name in present}
    assert present["판시사항"] == 7_999
    assert present["참조조문"] == 7_993


def test_fields_match_front_matter(precedents_read: TimedRead[Precedent], precedent_mirror: Path) -> None:
    by_ref = {r.source_ref: r for r in precedents_read.result.records}
    for path in _files(precedent_mirror)[::40]:
        text = path.read_text(encoding="utf-8")
        meta = yaml.safe_load(text.split("\n---\n", 1)[0][4:])
        r = by_ref[path.relative_to(precedent_mirror).as_posix()]
        assert r.serial_no == str(meta["판례일련번호"])
        assert (r.case_no, r.case_name, r.court) == (
            str(meta["사건번호"]).strip(),
            meta["사건명"].strip(),
            meta["법원명"],
        )
        assert r.decision_date == dt.date.fromisoformat(str(meta["선고일자"]))
        assert not r.body.startswith("# ") and f"# {meta['사건명']}\n" not in r.holdings


def test_file_names_with_spaces(precedents_read: TimedRead[Precedent]) -> None:
    spaced = [r for r in precedents_read.result.records if " " in r.source_ref]
    assert spaced
    [r] = [r for r in spaced if r.source_ref == "민사/대법원/4285민상169 내지 177.md"]
    assert r.case_no == "4285민상169 내지 177"
    assert r.decision_date == dt.date(1952, 3, 10)


def test_frame_matches_schema(precedents_read: TimedRead[Precedent]) -> None:
    frame = to_frame(precedents_read.result.records, Precedent)
    assert frame.height == 8_000
    assert frame["prec_id"].is_unique().all()


def test_read_is_fast(precedents_read: TimedRead[Precedent]) -> None:
    assert precedents_read.seconds < 60  # ~3.5 s on 2 cores; a generous bound against pathological slowdowns


# --- parse_precedent_markdown on snippets -----------------------------------------------------------------------

FULL = """---
판례일련번호: '145683'
사건번호: 2000므1257(본소), 1264(반소)
사건명: 손해배상(사실혼파기)
법원명: 대법원
법원등급: 대법원
사건종류: 가사
출처: https://www.law.go.kr/LSW/precInfoP.do?precSeq=145683
선고일자: '2003-11-14'
---

# 손해배상(사실혼파기)

## 판시사항

[1] 첫째 쟁점
[2] 둘째 쟁점

## 판결요지

요지.

## 참조조문

[1] 민법 제3조

## 참조판례

대법원 1995. 3. 28. 선고 94므1447 판결

## 판례내용

【원고, 피상고인】 원고
  가. 들여쓴 줄

## 별지

별지 내용.

"""


def test_parse_full_snippet() -> None:
    r = parse_precedent_markdown(FULL, "가사/대법원/2000므1257_본소_1264_반소.md")
    assert r.prec_id == "prec:145683"
    assert r.serial_no == "145683"
    assert r.case_no == "2000므1257(본소), 1264(반소)"
    assert r.case_name == "손해배상(사실혼파기)"
    assert (r.court, r.court_level, r.case_type) == ("대법원", "대법원", "가사")
    assert r.decision_date == dt.date(2003, 11, 14)
    assert r.judgment_type == ""
    assert r.holdings == "[1] 첫째 쟁점\n[2] 둘째 쟁점"  # line breaks kept, surrounding blank lines stripped
    assert r.summary == "요지."
    assert r.ref_articles == "[1] 민법 제3조"
    assert r.ref_cases == "대법원 1995. 3. 28. 선고 94므1447 판결"
    # inner indentation kept; an unknown "## …" heading stays text of the section it is in
    assert r.body == "【원고, 피상고인】 원고\n  가. 들여쓴 줄\n\n## 별지\n\n별지 내용."
    assert r.source_ref == "가사/대법원/2000므1257_본소_1264_반소.md"


def test_missing_sections_and_date() -> None:
    text = FULL
    for line in ("선고일자: '2003-11-14'\n", "법원등급: 대법원\n", "사건종류: 가사\n"):
        text = text.replace(line, "")
    text = text.split("## 판결요지")[0] + "## 판례내용\n\n본문만.\n"
    text = text.replace("## 판시사항\n\n[1] 첫째 쟁점\n[2] 둘째 쟁점\n\n", "")
    r = parse_precedent_markdown(text, "민사/하급심/2020가합1.md")
    assert (r.holdings, r.summary, r.ref_articles, r.ref_cases) == ("", "", "", "")
    assert r.body == "본문만."
    assert r.decision_date is None
    assert (r.court_level, r.case_type) == ("하급심", "민사")  # from the folders


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("# 제목\n\n## 판례내용\n본문\n", "no YAML front matter"),
        ("---\n사건번호: 1\n---\n", "판례일련번호"),
        ("---\n판례일련번호: ''\n---\n", "판례일련번호"),
        ("---\n판례일련번호: abc\n---\n", "digits"),
        ("---\n판례일련번호: [1\n---\n", "invalid YAML"),
    ],
)
def test_malformed_precedent_raises(text: str, reason: str) -> None:
    with pytest.raises(MirrorFormatError, match=reason):
        parse_precedent_markdown(text, "민사/대법원/x.md")
